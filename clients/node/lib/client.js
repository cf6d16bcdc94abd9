'use strict';
/**
 * The app side of normd: decides per call whether to send the work to the
 * sidecar or do it in-app, sends it over a keep-alive Unix socket (TCP as a
 * fallback transport), and turns every "normd can't right now" into a call of
 * the caller's in-app function. It must never make a call slower than its
 * deadline plus a small slack, and never retry contract errors.
 *
 * This file wires the parts together and holds the order of one call:
 * request (request.js) → route (route.js, flags.js) → shadow (shadow.js) or
 * breaker (breaker.js) → exchange (transport.js, exchange.js) → what the
 * answer means (answer.js) → counters (stats.js).
 */

const { CircuitBreaker } = require('./breaker');
const { clampPercent } = require('./rollout');
const { NormdUnavailableError, NormdClosedError } = require('./errors');
const { positiveNumber } = require('./options');
const { buildNormRequest, normPath } = require('./request');
const { Transport } = require('./transport');
const { LOCAL_TIMEOUT } = require('./exchange');
const { FlagsCache } = require('./flags');
const { route } = require('./route');
const { classify } = require('./answer');
const { Shadow } = require('./shadow');
const { CallCounters } = require('./stats');

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
 * @property {number} [shadowMaxConcurrent] shadow calls out at once, default 4; past it a shadowed call is skipped
 * @property {(result: any) => Buffer|Uint8Array|string} [shadowCanonical] in-app result → its canonical bytes (default: the result itself when it is bytes or a string)
 * @property {(inapp: any, normd: NormdResult) => boolean|Promise<boolean>} [shadowCompare] replaces the digest comparison of shadow mode
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
class NormdClient {
  /** @param {NormdClientOptions} opts */
  constructor(opts = {}) {
    if (!opts.socketPath && !opts.port) throw new TypeError('NormdClient needs socketPath and/or port');
    const maxSockets = positiveNumber('maxSockets', opts.maxSockets, 32) || 1;
    const idleSocketTimeoutMs = positiveNumber('idleSocketTimeoutMs', opts.idleSocketTimeoutMs, 5000);
    const maxFreeSockets = positiveNumber('maxFreeSockets', opts.maxFreeSockets, maxSockets);
    this._deadlineMs = positiveNumber('deadlineMs', opts.deadlineMs, 20);
    this._slackMs = positiveNumber('timeoutSlackMs', opts.timeoutSlackMs, 5);
    const flagsTimeoutMs = positiveNumber('flagsTimeoutMs', opts.flagsTimeoutMs, 1000);
    const maxResponseBytes = positiveNumber('maxResponseBytes', opts.maxResponseBytes, 64 * 1024 * 1024);
    const shadowMaxConcurrent = positiveNumber('shadowMaxConcurrent', opts.shadowMaxConcurrent, 4);
    const flagsRefreshMs = positiveNumber('flagsRefreshMs', opts.flagsRefreshMs, 5000);
    this._now = opts.now || (() => performance.now());
    this._breaker = new CircuitBreaker({ ...(opts.breaker || {}), now: this._now });

    this._transport = new Transport({
      socketPath: opts.socketPath,
      host: opts.host,
      port: opts.port,
      maxSockets,
      maxFreeSockets,
      idleSocketTimeoutMs,
      maxResponseBytes,
    });
    /** Local deadlines of every in-flight request (the transport's; tests look at it). */
    this._deadlines = this._transport.deadlines;
    this._fallback = opts.fallback;
    this._defaults = { profile: opts.profile, schema: opts.schema, encoding: opts.encoding, level: opts.level };
    this._defaultNormPath = normPath({}, this._defaults);
    this._closed = false;
    this._c = new CallCounters();

    /** @type {number|undefined} */
    this._rolloutOverride = opts.rolloutPercent === undefined || opts.rolloutPercent === null
      ? undefined : clampPercent(opts.rolloutPercent);

    const request = this._transport.request.bind(this._transport);
    this._flags = new FlagsCache({ request, flagName: opts.flagName || 'norm', timeoutMs: flagsTimeoutMs });
    this._shadow = new Shadow({
      maxConcurrent: shadowMaxConcurrent,
      canonical: opts.shadowCanonical,
      compare: opts.shadowCompare,
      breakerClosed: () => this._breaker.state === 'closed',
      send: (path, headers, payload, timeoutMs) => request('POST', path, headers, payload, timeoutMs),
    });
    if (this._rolloutOverride === undefined) this._flags.start(flagsRefreshMs);
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
   * @throws {import('./errors').NormdError} on contract errors (4xx other than 429)
   */
  async norm(body, opts = {}) {
    if (this._closed) throw new NormdClosedError();

    // Everything that can throw on bad input happens before the breaker hands
    // out a (probe) slot, so a caller bug can never wedge it half-open.
    const { path, headers, payload, deadlineMs } = buildNormRequest(body, opts, this._defaults, this._deadlineMs, this._defaultNormPath);
    this._c.calls++;

    const skip = route(opts.key, this._flags.flag, this._rolloutOverride);
    if (skip === 'shadow') {
      const r = await this._fallBack('shadow', body, opts, undefined);
      this._shadow.start(r.data, opts.key, { path, headers, payload }, deadlineMs + this._slackMs);
      return r;
    }
    if (skip) return this._fallBack(skip, body, opts, undefined);
    const ticket = this._breaker.tryAcquire();
    if (ticket < 0) return this._fallBack('breaker_open', body, opts, undefined);

    let res;
    try {
      res = await this._transport.request('POST', path, headers, payload, deadlineMs + this._slackMs);
    } catch (err) {
      // Any other socket-level failure is normd's side too: `connection`.
      const reason = err && err.code === LOCAL_TIMEOUT ? 'timeout' : 'connection';
      this._breaker.onFailure(ticket);
      return this._fallBack(reason, body, opts, err);
    }

    const a = classify(res);
    if (a.breakerOk) this._breaker.onSuccess(ticket);
    else this._breaker.onFailure(ticket);
    if (a.kind === 'ok') {
      this._c.normd_ok++;
      return a.result;
    }
    if (a.kind === 'error') {
      this._c.error(a.code);
      throw a.error;
    }
    return this._fallBack(a.reason, body, opts, a.error);
  }

  async _fallBack(reason, body, opts, error) {
    this._c.fallback(reason);
    const fn = opts.fallback || this._fallback;
    if (typeof fn !== 'function') throw new NormdUnavailableError(reason, error);
    const data = await fn(body, { reason, key: opts.key, error });
    return { path: 'inapp', reason, data };
  }

  /**
   * Resolves once the first GET /flags has settled (true if it loaded flags).
   * norm() does not wait for it: until flags are known, calls fall back with
   * reason `unavailable`. Await this at startup to route from the first call.
   * @returns {Promise<boolean>}
   */
  ready() {
    return this._flags.initial;
  }

  /**
   * Fetch GET /flags once. On any failure the last good flags stay in use.
   * Concurrent calls share one request.
   * @param {{timeoutMs?: number}} [o] overrides flagsTimeoutMs for this fetch
   * @returns {Promise<boolean>} whether the refresh succeeded
   */
  refreshFlags(o = {}) {
    return this._flags.refresh(o);
  }

  /** Counters of the client's decisions, plus breaker, shadow and flags state. */
  stats() {
    const t = this._transport.counters;
    return {
      ...this._c.snapshot(),
      retries: t.retries,
      transport_failovers: t.transport_failovers,
      by_transport: { ...t.by_transport },
      breaker: this._breaker.snapshot(),
      rollout_override: this._rolloutOverride ?? null,
      shadow: this._shadow.snapshot(),
      flags: this._flags.snapshot(),
    };
  }

  /** Zero the counters (not the breaker or the flags). */
  resetStats() {
    this._c.reset();
    this._transport.resetCounters();
    this._flags.resetCounters();
    this._shadow.reset();
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
    this._flags.close();
    this._shadow.close();
    this._transport.close();
  }
}

module.exports = { NormdClient };
