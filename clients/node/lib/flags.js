'use strict';
/**
 * The last good flag of our endpoint from normd's GET /flags, refreshed in the
 * background. A failed or malformed refresh never replaces it: stale but
 * usable beats a guess.
 */

const { clampPercent } = require('./rollout');
const { positiveNumber } = require('./options');

/** First retry of a failed first GET /flags; doubles up to the refresh period. */
const FIRST_FLAGS_RETRY_MS = 100;

/** Constant request headers of GET /flags (http.request only reads them). */
const FLAGS_HEADERS = Object.freeze({ accept: 'application/json' });

/**
 * @typedef {{enabled: boolean, rollout_percent: number, shadow_percent: number}} Flag
 */

class FlagsCache {
  /**
   * @param {object} o
   * @param {(method: string, path: string, headers: Record<string,string>, payload: undefined, timeoutMs: number) => Promise<{status: number, body: Buffer}>} o.request
   * @param {string} o.flagName which flag of the document routes our calls
   * @param {number} o.timeoutMs timeout of one GET /flags
   */
  constructor(o) {
    this._request = o.request;
    this._flagName = o.flagName;
    this._timeoutMs = o.timeoutMs;
    /** @type {Flag|null} last good flag, null before the first successful fetch */
    this.flag = null;
    this._info = { version: null, mtime: null, fetchedAt: null, lastError: null };
    /** @type {Promise<boolean>|null} */
    this._inFlight = null;
    /** @type {Promise<boolean>} the first fetch; resolved true when there is none to do */
    this.initial = Promise.resolve(true);
    this._timer = null;
    this._firstTimer = null;
    this._closed = false;
    this.resetCounters();
  }

  resetCounters() {
    this.refreshOk = 0;
    this.refreshFailures = 0;
  }

  /**
   * Fetch now, then every `everyMs` (0: only on refresh()), and until the first
   * fetch succeeds sooner than that.
   * @param {number} everyMs
   */
  start(everyMs) {
    this.initial = this.refresh();
    if (everyMs > 0) {
      this._timer = setInterval(() => { this.refresh(); }, everyMs);
      this._timer.unref();
      // Until flags are known every call goes in-app; do not wait a whole period
      // to try again when the first fetch fails (normd still starting).
      this.initial.then((ok) => { if (!ok) this._retryFirst(FIRST_FLAGS_RETRY_MS, everyMs); });
    }
  }

  /**
   * Retries GET /flags after `delayMs`, doubling, until it succeeds or the delay
   * reaches the refresh period (the interval timer covers it from there).
   * @param {number} delayMs
   * @param {number} periodMs
   */
  _retryFirst(delayMs, periodMs) {
    if (this._closed || this.flag || delayMs >= periodMs) return;
    this._firstTimer = setTimeout(() => {
      this._firstTimer = null;
      this.refresh().then((ok) => { if (!ok) this._retryFirst(delayMs * 2, periodMs); });
    }, delayMs);
    this._firstTimer.unref();
  }

  /**
   * Fetch GET /flags once. On any failure the last good flags stay in use.
   * Concurrent calls share one request.
   * @param {{timeoutMs?: number}} [o] overrides the timeout for this fetch
   * @returns {Promise<boolean>} whether the refresh succeeded
   */
  refresh(o = {}) {
    if (this._closed) return Promise.resolve(false);
    if (this._inFlight) return this._inFlight;
    this._inFlight = (async () => {
      try {
        const timeoutMs = positiveNumber('timeoutMs', o.timeoutMs, this._timeoutMs);
        const res = await this._request('GET', '/flags', FLAGS_HEADERS, undefined, timeoutMs);
        if (res.status !== 200) throw new Error(`GET /flags answered ${res.status}`);
        const doc = JSON.parse(res.body.toString('utf8'));
        // Only a flags document ({"flags": {...}, ...}) may move the rollout: any other
        // JSON a 200 can carry (an array, {}, a health document) keeps the last good flags.
        if (!isPlainObject(doc) || !isPlainObject(doc.flags)) {
          throw new Error('GET /flags: body is not a flags document');
        }
        this.flag = parseFlag(doc.flags[this._flagName]);
        this._info = {
          version: doc.version ?? null,
          mtime: doc.mtime ?? null,
          fetchedAt: Date.now(),
          lastError: null,
        };
        this.refreshOk++;
        return true;
      } catch (err) {
        this.refreshFailures++;
        this._info.lastError = err && err.message ? err.message : String(err);
        return false;
      } finally {
        this._inFlight = null;
      }
    })();
    return this._inFlight;
  }

  /** The `flags` section of the client's stats(). */
  snapshot() {
    const f = this.flag;
    return {
      loaded: f !== null,
      enabled: f ? f.enabled : null,
      rollout_percent: f ? f.rollout_percent : null,
      shadow_percent: f ? f.shadow_percent : null,
      version: this._info.version,
      mtime: this._info.mtime,
      age_ms: this._info.fetchedAt === null ? null : Date.now() - this._info.fetchedAt,
      refresh_ok: this.refreshOk,
      refresh_failures: this.refreshFailures,
      last_error: this._info.lastError,
    };
  }

  /** Stop the timers; later refreshes resolve false at once. */
  close() {
    this._closed = true;
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    if (this._firstTimer) clearTimeout(this._firstTimer);
    this._firstTimer = null;
  }
}

/**
 * A flag from GET /flags. Missing → enabled at 100 %, no shadow (normd's own
 * defaults); a malformed one throws so the last good flags stay.
 * @returns {Flag}
 */
function parseFlag(raw) {
  if (raw === undefined || raw === null) return { enabled: true, rollout_percent: 100, shadow_percent: 0 };
  if (!isPlainObject(raw)) throw new Error('flag is not an object');
  const enabled = raw.enabled === undefined ? true : raw.enabled;
  if (typeof enabled !== 'boolean') throw new Error('flag.enabled is not a boolean');
  const rp = raw.rollout_percent === undefined ? 100 : raw.rollout_percent;
  if (typeof rp !== 'number' || !Number.isFinite(rp)) throw new Error('flag.rollout_percent is not a number');
  const sp = raw.shadow_percent === undefined ? 0 : raw.shadow_percent;
  if (typeof sp !== 'number' || !Number.isFinite(sp)) throw new Error('flag.shadow_percent is not a number');
  return { enabled, rollout_percent: clampPercent(rp), shadow_percent: clampPercent(sp) };
}

/** A JSON object: not null, not an array. */
function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

module.exports = { FlagsCache, parseFlag };
