'use strict';
/**
 * The fallback table: what one HTTP answer of POST /norm means for the
 * caller (a result, a fallback reason, or a contract error) and for the
 * breaker. Pure; the normal path and the shadow path read answers the same way.
 */

const { NormdError } = require('./errors');

/**
 * The 4xx answers of normd's contract (429 aside): the caller's request or data
 * is wrong, so the call throws instead of falling back. Any other 4xx is not
 * normd's contract speaking and falls back as `server_error`.
 */
const CONTRACT_ERRORS = new Set([400, 404, 405, 413, 415, 422]);

/**
 * @typedef {{status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, transport: string}} Response
 * @typedef {{kind: 'ok', result: object, breakerOk: true}
 *         | {kind: 'fallback', reason: string, error: Error, breakerOk: boolean}
 *         | {kind: 'error', error: NormdError, code: string, breakerOk: true}} Answer
 */

/**
 * @param {Response} res
 * @returns {Answer}
 */
function classify(res) {
  const status = res.status;
  const requestId = /** @type {string|undefined} */ (res.headers['x-request-id']);
  if (status === 200) {
    if (res.headers['x-normd-digest'] === undefined) {
      // Not normd's contract: without the digest the bytes cannot be vouched for.
      const error = new Error('normd answered 200 without X-Normd-Digest');
      /** @type {any} */ (error).code = 'NORMD_NO_DIGEST';
      return { kind: 'fallback', reason: 'server_error', error, breakerOk: false };
    }
    return { kind: 'ok', result: normdResult(res, requestId), breakerOk: true };
  }
  const problem = parseProblem(res.body, status);
  const error = new NormdError(problem, { status, requestId });
  if (status === 429) return { kind: 'fallback', reason: 'overloaded', error, breakerOk: false };
  if (status === 503) {
    // disabled: alive and answering, the flag said no.
    if (problem.code === 'disabled') return { kind: 'fallback', reason: 'disabled', error, breakerOk: true };
    return { kind: 'fallback', reason: 'unavailable', error, breakerOk: false };
  }
  if (status === 504) return { kind: 'fallback', reason: 'deadline', error, breakerOk: false };
  if (CONTRACT_ERRORS.has(status)) {
    // The caller's request or data is wrong: the in-app path would not help.
    return { kind: 'error', error, code: problem.code || `http_${status}`, breakerOk: true };
  }
  // 500 internal, or anything the contract does not have (a 401 or 403 from
  // something in front of normd says nothing about the caller's data).
  return { kind: 'fallback', reason: 'server_error', error, breakerOk: false };
}

/**
 * The caller's view of a 200.
 * @param {Response} res
 * @param {string|undefined} requestId
 */
function normdResult(res, requestId) {
  const h = res.headers;
  return {
    path: 'normd',
    data: res.body,
    encoding: /** @type {string} */ (h['x-normd-encoding']),
    inputBytes: toInt(h['x-normd-input-bytes']),
    canonicalBytes: toInt(h['x-normd-canonical-bytes']),
    outputBytes: toInt(h['x-normd-output-bytes']),
    schema: /** @type {string|undefined} */ (h['x-normd-schema']),
    digest: /** @type {string|undefined} */ (h['x-normd-digest']),
    requestId,
    transport: res.transport,
  };
}

function toInt(v) {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** Parse a problem+json body; anything unparsable becomes a minimal problem. */
function parseProblem(buf, status) {
  try {
    const p = JSON.parse(buf.toString('utf8'));
    if (p && typeof p === 'object' && !Array.isArray(p)) return p;
  } catch { /* fall through */ }
  return { status, title: `HTTP ${status}`, detail: buf.subarray(0, 200).toString('utf8') };
}

module.exports = { classify, CONTRACT_ERRORS, parseProblem };
