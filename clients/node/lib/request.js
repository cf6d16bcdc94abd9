'use strict';
/**
 * The POST /norm request of one call: path with the selection query, headers
 * and body bytes. Pure; every check of a call's own inputs happens here, before
 * the breaker hands out a slot.
 */

const http = require('node:http');
const { positiveNumber } = require('./options');

/** The selection query keys of POST /norm, in the order they are sent. */
const SELECTION = Object.freeze(['profile', 'schema', 'encoding', 'level']);

/**
 * `/norm` with the selection query: each key from the call, else from the
 * defaults; unset and empty values are left out.
 * @param {Record<string, any>} opts
 * @param {Record<string, any>} defaults
 */
function normPath(opts, defaults) {
  const query = new URLSearchParams();
  for (const k of SELECTION) {
    const v = opts[k] ?? defaults[k];
    if (v !== undefined && v !== null && v !== '') query.set(k, String(v));
  }
  const qs = query.toString();
  return qs ? `/norm?${qs}` : '/norm';
}

/**
 * The POST /norm request for one call: path with the selection query,
 * headers (X-Deadline-Ms an integer >= 1), and the body bytes. Pure, and the
 * only place a call's inputs are checked.
 * @param {Buffer|Uint8Array|string|object} body
 * @param {{profile?: string, schema?: string, encoding?: string, level?: number, deadlineMs?: number,
 *          requestId?: string, headers?: Record<string,string>}} opts
 * @param {{profile?: string, schema?: string, encoding?: string, level?: number}} defaults
 * @param {number} defaultDeadlineMs
 * @param {string} [defaultPath] normPath({}, defaults), computed once by the client
 */
function buildNormRequest(body, opts, defaults, defaultDeadlineMs, defaultPath) {
  const deadlineMs = Math.max(1, Math.round(positiveNumber('deadlineMs', opts.deadlineMs, defaultDeadlineMs)));
  const payload = Buffer.isBuffer(body) ? body
    : body instanceof Uint8Array ? Buffer.from(body.buffer, body.byteOffset, body.byteLength)
      : typeof body === 'string' ? Buffer.from(body, 'utf8')
        : Buffer.from(JSON.stringify(body), 'utf8');
  // Most calls select nothing of their own: reuse the precomputed path rather
  // than build a URLSearchParams and a new string per call.
  const ownSelection = opts.profile != null || opts.schema != null || opts.encoding != null || opts.level != null;
  const path = defaultPath !== undefined && !ownSelection ? defaultPath : normPath(opts, defaults);
  // The request's own headers win over same-named ones passed through.
  /** @type {Record<string, string>} */
  const headers = opts.headers
    ? { ...opts.headers, 'content-type': 'application/json', 'content-length': String(payload.length), 'x-deadline-ms': String(deadlineMs) }
    : { 'content-type': 'application/json', 'content-length': String(payload.length), 'x-deadline-ms': String(deadlineMs) };
  if (opts.requestId) headers['x-request-id'] = opts.requestId;
  // Checked here, not left to http.request: a bad name or value (CR/LF, non-Latin-1)
  // is the caller's bug and must throw before the breaker, not count as a connection
  // failure against normd.
  for (const [name, value] of Object.entries(headers)) {
    try {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    } catch (err) {
      throw new TypeError(`header ${JSON.stringify(name)}: ${err.message}`);
    }
  }
  return { path, headers, payload, deadlineMs };
}

module.exports = { buildNormRequest, normPath };
