'use strict';
/**
 * The app side of normd: decides per call whether to send the work to the
 * sidecar or do it in-app, sends it over a keep-alive Unix socket (TCP as a
 * fallback transport), and turns every "normd can't right now" into a call of
 * the caller's in-app function. It must never make a call slower than its
 * deadline plus a small slack, and never retry contract errors.
 */

const http = require('node:http');
const { CircuitBreaker } = require('./breaker');
const { DeadlineQueue } = require('./deadlines');
const { inRollout, clampPercent } = require('./rollout');
const { NormdError, NormdUnavailableError, NormdClosedError } = require('./errors');

/** Fallback reasons, the keys of stats().fallback_by_reason. */
const REASONS = Object.freeze([
  'overloaded', // 429 overloaded
  'unavailable', // 503 not_ready/draining/memory_pressure; flags never loaded
  'deadline', // 504 deadline_exceeded
  'connection', // ENOENT, ECONNREFUSED, EACCES, ECONNRESET, EPIPE, ...
  'timeout', // no full answer within deadline + slack
  'breaker_open', // circuit breaker short-circuit
  'rollout', // key outside rollout_percent
  'disabled', // flag enabled=false, or 503 disabled
  'server_error', // 500 internal or any other unexpected status
]);

/** Connect-phase errors: the socket is not there, so another transport may be. */
const CONNECT_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ENOTSOCK', 'EADDRNOTAVAIL', 'EPERM']);

const LOCAL_TIMEOUT = 'NORMD_LOCAL_TIMEOUT';
/** Code of the error an exchange still out gets when the client is closed. */
const CLIENT_CLOSED = 'NORMD_CLIENT_CLOSED';

/**
 * @typedef {object} NormdClientOptions
 * @property {string} [socketPath] normd's Unix socket (preferred transport)
 * @property {number} [port] normd's TCP port on `host`; used when there is no socketPath, or when the socket cannot be connected
 * @property {string} [host] TCP host, default 127.0.0.1
 * @property {number} [maxSockets] keep-alive sockets per transport, default 32
 * @property {number} [maxFreeSockets] idle sockets kept, default = maxSockets
 * @property {number} [deadlineMs] default budget per call, sent as X-Deadline-Ms, default 20
 * @property {number} [timeoutSlackMs] local timeout = deadline + this, default 5
 * @property {number} [idleSocketTimeoutMs] idle keep-alive sockets are closed after this, default 5000 (below normd's 10 s header-read timeout)
 * @property {(body: any, ctx: FallbackContext) => any} [fallback] in-app implementation of the same job
 * @property {string} [profile] default ?profile=
 * @property {string} [schema] default ?schema=
 * @property {string} [encoding] default ?encoding=
 * @property {number} [level] default ?level=
 * @property {number} [rolloutPercent] fixed rollout 0..100 instead of GET /flags (load tests, static config)
 * @property {string} [flagName] flag consulted in GET /flags, default "norm"
 * @property {number} [flagsRefreshMs] background refresh period, default 5000 (0 = no timer)
 * @property {number} [flagsTimeoutMs] timeout of one GET /flags, default 1000
 * @property {{failureThreshold?: number, cooldownMs?: number}} [breaker] defaults 5 failures, 5000 ms
 * @property {number} [maxResponseBytes] cap on a response body read into memory, default 64 MiB
 * @property {() => number} [now] monotonic ms clock (tests inject one to drive the breaker)
 */

/**
 * @typedef {object} FallbackContext
 * @property {string} reason why normd was not used
 * @property {string|number|undefined} key the rollout key of the call
 * @property {Error|undefined} error the failure that caused the fallback, if any
 */

/**
 * @typedef {object} NormdResult
 * @property {'normd'|'inapp'} path who did the work
 * @property {any} data normd: the compressed canonical bytes (Buffer); inapp: what the fallback returned
 * @property {string} [reason] inapp only: the fallback reason
 * @property {string} [encoding] normd only: X-Normd-Encoding
 * @property {number} [inputBytes]
 * @property {number} [canonicalBytes]
 * @property {number} [outputBytes]
 * @property {string} [schema]
 * @property {string} [digest] X-Normd-Digest, `sha-256=:<base64>:`
 * @property {string} [requestId]
 * @property {'unix'|'tcp'} [transport]
 */

function positiveNumber(name, v, dflt) {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`${name} must be a finite number >= 0`);
  return v;
}

function toInt(v) {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function emptyReasons() {
  /** @type {Record<string, number>} */
  const o = {};
  for (const r of REASONS) o[r] = 0;
  return o;
}

class NormdClient {
  /** @param {NormdClientOptions} opts */
  constructor(opts = {}) {
    if (!opts.socketPath && !opts.port) throw new TypeError('NormdClient needs socketPath and/or port');
    /** @type {Array<{name: 'unix'|'tcp', socketPath?: string, host?: string, port?: number}>} */
    this._transports = [];
    if (opts.socketPath) this._transports.push({ name: 'unix', socketPath: opts.socketPath });
    if (opts.port) this._transports.push({ name: 'tcp', host: opts.host || '127.0.0.1', port: opts.port });

    const maxSockets = positiveNumber('maxSockets', opts.maxSockets, 32) || 1;
    this._agent = new http.Agent({
      keepAlive: true,
      // Close idle keep-alive sockets before normd's --header-read-timeout-ms (10 s by
      // default) does, so a request is rarely written onto a socket the server is closing.
      timeout: positiveNumber('idleSocketTimeoutMs', opts.idleSocketTimeoutMs, 5000),
      maxSockets,
      maxFreeSockets: positiveNumber('maxFreeSockets', opts.maxFreeSockets, maxSockets),
      scheduling: 'lifo',
    });

    this._deadlineMs = positiveNumber('deadlineMs', opts.deadlineMs, 20);
    this._slackMs = positiveNumber('timeoutSlackMs', opts.timeoutSlackMs, 5);
    this._fallback = opts.fallback;
    this._defaults = { profile: opts.profile, schema: opts.schema, encoding: opts.encoding, level: opts.level };
    this._defaultNormPath = normPath({}, this._defaults);
    this._flagName = opts.flagName || 'norm';
    this._flagsTimeoutMs = positiveNumber('flagsTimeoutMs', opts.flagsTimeoutMs, 1000);
    this._maxResponseBytes = positiveNumber('maxResponseBytes', opts.maxResponseBytes, 64 * 1024 * 1024);
    this._now = opts.now || (() => performance.now());
    this._breaker = new CircuitBreaker({ ...(opts.breaker || {}), now: this._now });
    /** Local deadlines of every in-flight request, on one unref'd timer. */
    this._deadlines = new DeadlineQueue();
    this._closed = false;

    /** @type {number|undefined} */
    this._rolloutOverride = opts.rolloutPercent === undefined || opts.rolloutPercent === null
      ? undefined : clampPercent(opts.rolloutPercent);

    /** Last good flag for our endpoint, or null before the first successful GET /flags. */
    this._flags = null;
    this._flagsInfo = { version: null, mtime: null, fetchedAt: null, lastError: null };
    this._flagsInFlight = null;
    /** @type {Promise<boolean>} */
    this._flagsInitial = Promise.resolve(true);
    this._timer = null;
    this._firstFlagsTimer = null;

    this._resetCounters();

    if (this._rolloutOverride === undefined) {
      this._flagsInitial = this.refreshFlags();
      const every = positiveNumber('flagsRefreshMs', opts.flagsRefreshMs, 5000);
      if (every > 0) {
        this._timer = setInterval(() => { this.refreshFlags(); }, every);
        this._timer.unref();
        // Until flags are known every call goes in-app; do not wait a whole period
        // to try again when the first fetch fails (normd still starting).
        this._flagsInitial.then((ok) => { if (!ok) this._retryFirstFlags(FIRST_FLAGS_RETRY_MS, every); });
      }
    }
  }

  /**
   * Retries GET /flags after `delayMs`, doubling, until it succeeds or the delay
   * reaches the refresh period (the interval timer covers it from there).
   * @param {number} delayMs
   * @param {number} periodMs
   */
  _retryFirstFlags(delayMs, periodMs) {
    if (this._closed || this._flags || delayMs >= periodMs) return;
    this._firstFlagsTimer = setTimeout(() => {
      this._firstFlagsTimer = null;
      this.refreshFlags().then((ok) => { if (!ok) this._retryFirstFlags(delayMs * 2, periodMs); });
    }, delayMs);
    this._firstFlagsTimer.unref();
  }

  _resetCounters() {
    this._c = {
      calls: 0,
      normd_ok: 0,
      fallback_total: 0,
      fallback_by_reason: emptyReasons(),
      errors: 0,
      errors_by_code: /** @type {Record<string, number>} */ ({}),
      retries: 0,
      transport_failovers: 0,
      by_transport: { unix: 0, tcp: 0 },
      flags_refresh_ok: 0,
      flags_refresh_failures: 0,
    };
  }

  /**
   * Normalize → validate → compress `body`, in normd when the flag and the
   * breaker allow it, else (or when normd says no) with the fallback.
   *
   * @param {Buffer|Uint8Array|string|object} body JSON text (sent as is) or a value (JSON.stringify'd)
   * @param {{key?: string|number, profile?: string, schema?: string, encoding?: string, level?: number,
   *          deadlineMs?: number, fallback?: (body: any, ctx: FallbackContext) => any,
   *          requestId?: string, headers?: Record<string,string>}} [opts]
   * @returns {Promise<NormdResult>}
   * @throws {NormdError} on contract errors (4xx other than 429)
   */
  async norm(body, opts = {}) {
    if (this._closed) throw new NormdClosedError();

    // Everything that can throw on bad input happens before the breaker hands
    // out a (probe) slot, so a caller bug can never wedge it half-open.
    const { path, headers, payload, deadlineMs } = buildNormRequest(body, opts, this._defaults, this._deadlineMs, this._defaultNormPath);
    this._c.calls++;

    const skip = this._routeReason(opts.key);
    if (skip) return this._fallBack(skip, body, opts, undefined);
    const ticket = this._breaker.tryAcquire();
    if (ticket < 0) return this._fallBack('breaker_open', body, opts, undefined);

    let res;
    try {
      res = await this._request('POST', path, headers, payload, deadlineMs + this._slackMs);
    } catch (err) {
      // Any other socket-level failure is normd's side too: `connection`.
      const reason = err && err.code === LOCAL_TIMEOUT ? 'timeout' : 'connection';
      this._breaker.onFailure(ticket);
      return this._fallBack(reason, body, opts, err);
    }

    const status = res.status;
    const requestId = /** @type {string|undefined} */ (res.headers['x-request-id']);
    if (status === 200) {
      this._breaker.onSuccess(ticket);
      this._c.normd_ok++;
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

    const problem = parseProblem(res.body, status);
    if (status === 429) {
      this._breaker.onFailure(ticket);
      return this._fallBack('overloaded', body, opts, problemError(problem, status, requestId));
    }
    if (status === 503) {
      if (problem.code === 'disabled') {
        this._breaker.onSuccess(ticket); // alive and answering; the flag said no
        return this._fallBack('disabled', body, opts, problemError(problem, status, requestId));
      }
      this._breaker.onFailure(ticket);
      return this._fallBack('unavailable', body, opts, problemError(problem, status, requestId));
    }
    if (status === 504) {
      this._breaker.onFailure(ticket);
      return this._fallBack('deadline', body, opts, problemError(problem, status, requestId));
    }
    if (CONTRACT_ERRORS.has(status)) {
      // The caller's request or data is wrong: the in-app path would not help.
      this._breaker.onSuccess(ticket);
      this._c.errors++;
      const code = problem.code || `http_${status}`;
      this._c.errors_by_code[code] = (this._c.errors_by_code[code] || 0) + 1;
      throw new NormdError(problem, { status, requestId });
    }
    // 500 internal, or anything the contract does not have (a 401 or 403 from
    // something in front of normd says nothing about the caller's data).
    this._breaker.onFailure(ticket);
    return this._fallBack('server_error', body, opts, problemError(problem, status, requestId));
  }

  /** @returns {string|null} a fallback reason if this call must not go to normd */
  _routeReason(key) {
    let percent;
    if (this._rolloutOverride !== undefined) {
      percent = this._rolloutOverride;
    } else {
      const f = this._flags;
      if (!f) return 'unavailable';
      if (!f.enabled) return 'disabled';
      percent = f.rollout_percent;
    }
    return inRollout(key, percent) ? null : 'rollout';
  }

  async _fallBack(reason, body, opts, error) {
    this._c.fallback_total++;
    this._c.fallback_by_reason[reason] = (this._c.fallback_by_reason[reason] || 0) + 1;
    const fn = opts.fallback || this._fallback;
    if (typeof fn !== 'function') throw new NormdUnavailableError(reason, error);
    const data = await fn(body, { reason, key: opts.key, error });
    return { path: 'inapp', reason, data };
  }

  /**
   * One HTTP exchange with normd, body read fully. Rejects with code
   * NORMD_LOCAL_TIMEOUT when `timeoutMs` passes (the request is destroyed, so
   * normd sees the connection close), or with the socket error.
   * Tries the next transport when the socket cannot be connected at all, and
   * retries once when a reused keep-alive socket turns out to be dead.
   * The state of the exchange lives in one Exchange object (see below).
   * @returns {Promise<{status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, transport: string}>}
   */
  _request(method, path, headers, payload, timeoutMs) {
    return new Promise((resolve, reject) => {
      new Exchange(this, method, path, headers, payload, timeoutMs, resolve, reject).start();
    });
  }

  /**
   * Resolves once the first GET /flags has settled (true if it loaded flags).
   * norm() does not wait for it: until flags are known, calls fall back with
   * reason `unavailable`. Await this at startup to route from the first call.
   * @returns {Promise<boolean>}
   */
  ready() {
    return this._flagsInitial;
  }

  /**
   * Fetch GET /flags once. On any failure the last good flags stay in use.
   * Concurrent calls share one request.
   * @param {{timeoutMs?: number}} [o] overrides flagsTimeoutMs for this fetch
   * @returns {Promise<boolean>} whether the refresh succeeded
   */
  refreshFlags(o = {}) {
    if (this._closed) return Promise.resolve(false);
    if (this._flagsInFlight) return this._flagsInFlight;
    this._flagsInFlight = (async () => {
      try {
        const timeoutMs = positiveNumber('timeoutMs', o.timeoutMs, this._flagsTimeoutMs);
        const res = await this._request('GET', '/flags', FLAGS_HEADERS, undefined, timeoutMs);
        if (res.status !== 200) throw new Error(`GET /flags answered ${res.status}`);
        const doc = JSON.parse(res.body.toString('utf8'));
        // Only a flags document ({"flags": {...}, ...}) may move the rollout: any other
        // JSON a 200 can carry (an array, {}, a health document) keeps the last good flags.
        if (!isPlainObject(doc) || !isPlainObject(doc.flags)) {
          throw new Error('GET /flags: body is not a flags document');
        }
        const flag = parseFlag(doc.flags[this._flagName]);
        this._flags = flag;
        this._flagsInfo = {
          version: doc.version ?? null,
          mtime: doc.mtime ?? null,
          fetchedAt: Date.now(),
          lastError: null,
        };
        this._c.flags_refresh_ok++;
        return true;
      } catch (err) {
        this._c.flags_refresh_failures++;
        this._flagsInfo.lastError = err && err.message ? err.message : String(err);
        return false;
      } finally {
        this._flagsInFlight = null;
      }
    })();
    return this._flagsInFlight;
  }

  /** Counters of the client's decisions, plus breaker and flags state. */
  stats() {
    const c = this._c;
    const f = this._flags;
    return {
      calls: c.calls,
      normd_ok: c.normd_ok,
      fallback_total: c.fallback_total,
      fallback_by_reason: { ...c.fallback_by_reason },
      errors: c.errors,
      errors_by_code: { ...c.errors_by_code },
      retries: c.retries,
      transport_failovers: c.transport_failovers,
      by_transport: { ...c.by_transport },
      breaker: this._breaker.snapshot(),
      rollout_override: this._rolloutOverride ?? null,
      flags: {
        loaded: f !== null,
        enabled: f ? f.enabled : null,
        rollout_percent: f ? f.rollout_percent : null,
        version: this._flagsInfo.version,
        mtime: this._flagsInfo.mtime,
        age_ms: this._flagsInfo.fetchedAt === null ? null : Date.now() - this._flagsInfo.fetchedAt,
        refresh_ok: c.flags_refresh_ok,
        refresh_failures: c.flags_refresh_failures,
        last_error: this._flagsInfo.lastError,
      },
    };
  }

  /** Zero the counters (not the breaker or the flags). */
  resetStats() {
    this._resetCounters();
  }

  /**
   * Stop the refresh timer, end every exchange still out (calls fall back in-app
   * as `connection`, including those waiting for a socket behind `maxSockets`,
   * which would otherwise open new connections after the close) and destroy
   * every socket, so the process can exit.
   */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    if (this._firstFlagsTimer) clearTimeout(this._firstFlagsTimer);
    this._firstFlagsTimer = null;
    for (const exchange of this._deadlines.takeAll()) {
      const err = new Error('the normd client was closed');
      /** @type {any} */ (err).code = CLIENT_CLOSED;
      exchange.abort(err);
    }
    this._agent.destroy();
  }
}

/** The exchange a ClientRequest belongs to; cleared when that attempt is over. */
const kExchange = Symbol('normd.exchange');

/** First retry of a failed first GET /flags; doubles up to the refresh period. */
const FIRST_FLAGS_RETRY_MS = 100;

/**
 * The 4xx answers of normd's contract (429 aside): the caller's request or data
 * is wrong, so the call throws instead of falling back. Any other 4xx is not
 * normd's contract speaking and falls back as `server_error`.
 */
const CONTRACT_ERRORS = new Set([400, 404, 405, 413, 415, 422]);

/** Constant request headers of GET /flags (http.request only reads them). */
const FLAGS_HEADERS = Object.freeze({ accept: 'application/json' });

/**
 * One HTTP exchange with normd across its attempts (transport failover, one
 * retry on a dead keep-alive socket), and its own entry in the client's
 * DeadlineQueue.
 *
 * Why a class and module-level listeners instead of closures: everything here
 * lives for the whole socket round trip, and what is alive when a scavenge
 * runs gets copied, and promoted if it is still alive at the next one. Per
 * call this is one object (plus the promise and its two resolving
 * functions), where there were half a dozen closures, their contexts and a
 * Timeout; the listeners below are
 * shared by all calls and find their exchange through `req[kExchange]`
 * (`this` is the emitter: the request, or the response whose `.req` it is).
 * An attempt that is over has `req[kExchange] = null`, so its late events
 * (the destroy of a timed-out request, a close after an error) are ignored.
 */
class Exchange {
  /**
   * @param {NormdClient} client
   * @param {string} method
   * @param {string} path
   * @param {Record<string, string>} headers
   * @param {Buffer|undefined} payload
   * @param {number} timeoutMs local timeout of the whole exchange, all attempts included
   * @param {(r: {status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, transport: string}) => void} resolve
   * @param {(err: Error) => void} reject
   */
  constructor(client, method, path, headers, payload, timeoutMs, resolve, reject) {
    this.client = client;
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.payload = payload;
    this.timeoutMs = timeoutMs;
    this.resolve = resolve;
    this.reject = reject;
    /** DeadlineQueue entry: absolute local deadline (performance.now() clock) and heap slot. */
    this.deadlineAt = performance.now() + timeoutMs;
    this.deadlineIndex = -1;
    /** Index in client._transports of the current attempt. */
    this.ti = 0;
    this.retried = false;
    /** @type {import('node:http').ClientRequest|null} the current attempt */
    this.req = null;
    this.gotResponse = false;
    /** @type {Buffer|null} body preallocated from Content-Length, filled up to `size` */
    this.body = null;
    /** @type {Buffer[]|null} body chunks when there is no Content-Length */
    this.chunks = null;
    this.size = 0;
  }

  start() {
    // First the request (http.request throws synchronously on a bad header,
    // and then there must be no deadline left queued), then the deadline.
    this._attempt();
    this.client._deadlines.add(this);
  }

  _attempt() {
    const c = this.client;
    const t = c._transports[this.ti];
    // A fixed-shape literal rather than a spread of the transport's options:
    // http.request copies it, so it is garbage as soon as the call returns.
    const req = http.request(t.socketPath !== undefined
      ? { socketPath: t.socketPath, agent: c._agent, method: this.method, path: this.path, headers: this.headers }
      : { host: t.host, port: t.port, agent: c._agent, method: this.method, path: this.path, headers: this.headers });
    req[kExchange] = this;
    this.req = req;
    this.gotResponse = false;
    req.on('error', onRequestError);
    req.on('response', onRequestResponse);
    req.end(this.payload);
  }

  /** The exchange is over (answered or failed): stop its deadline, ignore its request's later events. */
  _settle() {
    this.client._deadlines.remove(this);
    /** @type {any} */ (this.req)[kExchange] = null;
  }

  /**
   * The current attempt failed: fail over to the next transport, retry once
   * on a dead keep-alive socket, or reject.
   * @param {any} err
   */
  fail(err) {
    const c = this.client;
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    const code = err && err.code;
    if (!this.gotResponse && performance.now() < this.deadlineAt) {
      if (CONNECT_CODES.has(code) && this.ti + 1 < c._transports.length) {
        c._c.transport_failovers++;
        /** @type {any} */ (req)[kExchange] = null;
        this.ti++;
        this._attempt();
        return;
      }
      if (!this.retried && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) {
        // A keep-alive socket normd had already closed: safe to resend, the work is pure.
        c._c.retries++;
        /** @type {any} */ (req)[kExchange] = null;
        this.retried = true;
        this._attempt();
        return;
      }
    }
    this._settle();
    this.reject(err);
  }

  /**
   * The response is unusable (too large): fail the exchange now and destroy
   * the request, so the connection is not reused.
   * @param {Error} err
   */
  _cut(err) {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    this.fail(err);
    req.destroy(err);
  }

  /**
   * The client was closed: end the exchange now (already out of the deadline
   * queue), whether it waits for a socket, a response or its body.
   * @param {Error} err
   */
  abort(err) {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    this._settle();
    this.reject(err);
    req.destroy(err);
  }

  /** DeadlineQueue callback: the local deadline passed without a complete answer. */
  onDeadline() {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    const err = new Error(`normd did not answer within ${this.timeoutMs} ms`);
    /** @type {any} */ (err).code = LOCAL_TIMEOUT;
    // Settle first, then destroy: whatever the destroy makes req/res emit, in
    // whichever order, finds no exchange, so the cause stays our timeout.
    this._settle();
    this.reject(err);
    req.destroy(err); // normd sees the connection close and stops working for nobody
  }

  /** @param {import('node:http').IncomingMessage} res */
  onResponse(res) {
    this.gotResponse = true;
    const max = this.client._maxResponseBytes;
    const declared = this.method === 'HEAD' ? -1 : declaredLength(res);
    if (declared > max) {
      // Known too large before a byte of it is read or allocated.
      this._cut(tooLargeError(max));
      return;
    }
    if (declared >= 0) {
      // The common case: one buffer of the announced size, filled in place,
      // instead of a chunk list and a Buffer.concat copy at the end.
      // allocUnsafe is fine: 'end' checks that every byte was written before
      // the buffer is handed out.
      this.body = Buffer.allocUnsafe(declared);
    } else {
      this.chunks = [];
    }
    this.size = 0;
    res.on('data', onResponseData);
    res.on('error', onResponseError);
    res.on('close', onResponseClose);
    res.on('end', onResponseEnd);
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    const size = this.size + chunk.length;
    if (this.body !== null) {
      // Node's parser never delivers more than Content-Length; copy() would
      // silently truncate if it did, so make that a cut response instead.
      if (size > this.body.length) {
        this._cut(cutResponseError('normd sent more than its Content-Length'));
        return;
      }
      chunk.copy(this.body, this.size);
    } else {
      if (size > this.client._maxResponseBytes) {
        this._cut(tooLargeError(this.client._maxResponseBytes));
        return;
      }
      /** @type {Buffer[]} */ (this.chunks).push(chunk);
    }
    this.size = size;
  }

  /** @param {import('node:http').IncomingMessage} res */
  onEnd(res) {
    let body;
    if (this.body !== null) {
      if (this.size !== this.body.length) {
        this.fail(cutResponseError(`normd ended the response after ${this.size} of ${this.body.length} bytes`));
        return;
      }
      body = this.body;
    } else {
      body = Buffer.concat(/** @type {Buffer[]} */ (this.chunks), this.size);
    }
    const transport = this.client._transports[this.ti].name;
    this._settle();
    this.client._c.by_transport[transport]++;
    this.resolve({ status: res.statusCode || 0, headers: res.headers, body, transport });
  }
}

// The shared listeners. `this` is the emitter (see Exchange).

/** @this {import('node:http').ClientRequest} @param {Error} err */
function onRequestError(err) {
  const ex = this[kExchange];
  if (ex) ex.fail(err);
}

/** @this {import('node:http').ClientRequest} @param {import('node:http').IncomingMessage} res */
function onRequestResponse(res) {
  const ex = this[kExchange];
  if (ex) ex.onResponse(res);
  else res.resume(); // an attempt already over: drain, never buffer
}

/** @this {import('node:http').IncomingMessage} @param {Buffer} chunk */
function onResponseData(chunk) {
  const ex = this.req[kExchange];
  if (ex) ex.onData(chunk);
}

/** @this {import('node:http').IncomingMessage} @param {Error} err */
function onResponseError(err) {
  const ex = this.req[kExchange];
  if (ex) ex.fail(err);
}

/** @this {import('node:http').IncomingMessage} */
function onResponseClose() {
  const ex = this.req[kExchange];
  if (ex && !this.complete) ex.fail(cutResponseError('normd closed the connection mid-response'));
}

/** @this {import('node:http').IncomingMessage} */
function onResponseEnd() {
  const ex = this.req[kExchange];
  if (ex) ex.onEnd(this);
}

/**
 * The body length announced by Content-Length, or -1 when there is none to
 * trust (no header, or a status that has no body whatever the header says).
 * @param {import('node:http').IncomingMessage} res
 */
function declaredLength(res) {
  const status = res.statusCode || 0;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return -1;
  const raw = res.headers['content-length'];
  if (raw === undefined) return -1;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

/** A response cut short: counted like a reset connection. */
function cutResponseError(message) {
  const e = new Error(message);
  /** @type {any} */ (e).code = 'ECONNRESET';
  return e;
}

function tooLargeError(max) {
  const e = new Error(`normd response larger than ${max} bytes`);
  /** @type {any} */ (e).code = 'NORMD_RESPONSE_TOO_LARGE';
  return e;
}

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

/**
 * A flag from GET /flags. Missing → enabled at 100 % (normd's own default);
 * a malformed one throws so the last good flags stay.
 */
function parseFlag(raw) {
  if (raw === undefined || raw === null) return { enabled: true, rollout_percent: 100 };
  if (!isPlainObject(raw)) throw new Error('flag is not an object');
  const enabled = raw.enabled === undefined ? true : raw.enabled;
  if (typeof enabled !== 'boolean') throw new Error('flag.enabled is not a boolean');
  const rp = raw.rollout_percent === undefined ? 100 : raw.rollout_percent;
  if (typeof rp !== 'number' || !Number.isFinite(rp)) throw new Error('flag.rollout_percent is not a number');
  return { enabled, rollout_percent: clampPercent(rp) };
}

/** A JSON object: not null, not an array. */
function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parse a problem+json body; anything unparsable becomes a minimal problem. */
function parseProblem(buf, status) {
  try {
    const p = JSON.parse(buf.toString('utf8'));
    if (p && typeof p === 'object' && !Array.isArray(p)) return p;
  } catch { /* fall through */ }
  return { status, title: `HTTP ${status}`, detail: buf.subarray(0, 200).toString('utf8') };
}

function problemError(problem, status, requestId) {
  return new NormdError(problem, { status, requestId });
}

module.exports = { NormdClient, REASONS, parseFlag, buildNormRequest };
