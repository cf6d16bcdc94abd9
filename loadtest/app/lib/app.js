'use strict';
/**
 * The demo main app: POST /orders does the order job in-app or through
 * normd (as the rollout says), GET /stats shows what that costs this
 * process. Configuration comes in as a value (see config.js), never read
 * from the environment here.
 */
const http = require('node:http');
const path = require('node:path');
const { NormdClient, NormdError } = require('@normd/client');
const { makeInAppNorm, InAppError } = require('./inapp');
const { Metrics } = require('./metrics');

/** normd codes that mean "the order is bad" rather than "the app is misconfigured". */
const BAD_REQUEST = new Set(['invalid_json', 'invalid_utf8', 'duplicate_key', 'too_deep', 'bad_content_encoding']);
const UNPROCESSABLE = new Set(['schema_violation', 'number_precision']);
const TOO_LARGE = new Set(['payload_too_large', 'decoded_too_large']);

/**
 * @typedef {object} AppConfig
 * @property {string} host
 * @property {number} port
 * @property {string} schemaPath
 * @property {number} maxBodyBytes
 * @property {string} [normdSocket]
 * @property {number} [normdPort]
 * @property {boolean} flagsFromSidecar
 * @property {number} [rollout] 0..100 override
 * @property {string} [normdProfile]
 * @property {string} [normdSchema]
 * @property {string} [normdEncoding]
 * @property {number} [normdLevel]
 * @property {number} normdDeadlineMs
 * @property {number} shutdownTimeoutMs
 */

function send(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Read the whole body, at most `max` bytes; resolves null when larger. */
function readBody(req, max) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      req.resume();
      resolve(null);
      return;
    }
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > max) over = true;
      if (!over) chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

/**
 * How calls are routed, for the log and /stats.
 * @param {AppConfig} cfg
 */
function routingOf(cfg) {
  if (!cfg.normdSocket && !cfg.normdPort) return { mode: 'inapp_only', why: 'no NORMD_SOCKET/NORMD_PORT' };
  if (cfg.rollout !== undefined) return { mode: 'rollout_env', rollout_percent: cfg.rollout };
  if (cfg.flagsFromSidecar) return { mode: 'sidecar_flags' };
  return { mode: 'rollout_env', rollout_percent: 0, why: 'neither ROLLOUT nor NORMD_FLAGS_FROM_SIDECAR=1 set' };
}

/** @param {AppConfig} cfg */
function createApp(cfg) {
  const inAppNorm = makeInAppNorm(cfg.schemaPath);
  const metrics = new Metrics();
  const routing = routingOf(cfg);
  let client = null;
  if (routing.mode !== 'inapp_only') {
    const useProfile = Boolean(cfg.normdProfile);
    client = new NormdClient({
      socketPath: cfg.normdSocket,
      port: cfg.normdPort,
      deadlineMs: cfg.normdDeadlineMs,
      rolloutPercent: routing.mode === 'rollout_env' ? routing.rollout_percent : undefined,
      profile: cfg.normdProfile,
      // Without a profile, ask for the same job as the in-app path by query.
      schema: cfg.normdSchema ?? (useProfile ? undefined : path.basename(cfg.schemaPath).replace(/\.json$/, '')),
      encoding: cfg.normdEncoding ?? (useProfile ? undefined : 'gzip'),
      level: cfg.normdLevel ?? (useProfile ? undefined : 1),
      fallback: (body) => inAppNorm(body),
    });
  }
  let seq = 0;

  /**
   * Answer POST /orders and record it. Deliberately not a closure made per
   * request: on the normd path the request waits on a socket round trip, and
   * a per-request closure (with the context it captures) would live across
   * it, long enough to be promoted, which the in-app path never pays.
   * @param {import('node:http').ServerResponse} res
   * @param {bigint} t0 handler entry, process.hrtime.bigint()
   * @param {number} status
   * @param {'normd'|'inapp'|null} pathTaken
   * @param {string|undefined} reason
   * @param {object} doc
   */
  function finish(res, t0, status, pathTaken, reason, doc) {
    send(res, status, doc);
    metrics.observe(status, pathTaken, Number(process.hrtime.bigint() - t0) / 1000, reason);
  }

  async function orders(req, res) {
    const t0 = process.hrtime.bigint();
    const body = await readBody(req, cfg.maxBodyBytes);
    if (body === null) {
      finish(res, t0, 413, null, undefined, { ok: false, error: 'payload_too_large' });
      return;
    }
    try {
      let pathTaken;
      let reason;
      let data;
      if (client) {
        const key = req.headers['x-request-key'] || req.headers['x-request-id'] || `req-${seq++}`;
        const r = await client.norm(body, { key: String(key) });
        pathTaken = r.path;
        reason = r.reason;
        data = r.data;
      } else {
        pathTaken = 'inapp';
        data = inAppNorm(body);
      }
      finish(res, t0, 200, pathTaken, reason, reason
        ? { ok: true, path: pathTaken, bytes: data.length, reason }
        : { ok: true, path: pathTaken, bytes: data.length });
    } catch (err) {
      if (err instanceof InAppError) {
        finish(res, t0, err.status, null, undefined, { ok: false, path: 'inapp', error: err.code, detail: err.message, errors: err.errors });
      } else if (err instanceof NormdError) {
        const status = BAD_REQUEST.has(err.code) ? 400 : UNPROCESSABLE.has(err.code) ? 422 : TOO_LARGE.has(err.code) ? 413 : 500;
        finish(res, t0, status, null, undefined, { ok: false, path: 'normd', error: err.code, detail: err.problem.detail, errors: err.errors });
      } else {
        finish(res, t0, 500, null, undefined, { ok: false, error: 'internal', detail: String(err && err.message) });
      }
    }
  }

  const server = http.createServer((req, res) => {
    const url = req.url || '/';
    const route = url.split('?')[0];
    if (route === '/orders') {
      if (req.method !== 'POST') return send(res, 405, { ok: false, error: 'method_not_allowed' });
      orders(req, res).catch((err) => { if (!res.headersSent) send(res, 500, { ok: false, error: 'internal', detail: String(err) }); });
      return;
    }
    if (route === '/stats' && req.method === 'GET') {
      return send(res, 200, { ...metrics.snapshot(), routing, client: client ? client.stats() : null });
    }
    if (route === '/stats/reset' && req.method === 'POST') {
      metrics.reset();
      if (client) client.resetStats();
      req.resume();
      return send(res, 200, { ok: true });
    }
    if (route === '/healthz' && req.method === 'GET') return send(res, 200, { ok: true });
    req.resume();
    return send(res, 404, { ok: false, error: 'not_found' });
  });
  server.keepAliveTimeout = 65000;

  return {
    server,
    metrics,
    routing,
    client,
    /** @returns {Promise<number>} the bound port */
    listen() {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(cfg.port, cfg.host, () => {
          server.off('error', reject);
          resolve(/** @type {import('node:net').AddressInfo} */ (server.address()).port);
        });
      });
    },
    /**
     * Stop accepting, let in-flight requests finish (bounded), release
     * everything that keeps the process alive.
     * @returns {Promise<{cut: boolean}>}
     */
    close() {
      return new Promise((resolve) => {
        let cut = false;
        const force = setTimeout(() => { cut = true; server.closeAllConnections(); }, cfg.shutdownTimeoutMs);
        server.close(() => {
          clearTimeout(force);
          if (client) client.close();
          metrics.close();
          resolve({ cut });
        });
        server.closeIdleConnections();
      });
    },
  };
}

module.exports = { createApp, routingOf };
