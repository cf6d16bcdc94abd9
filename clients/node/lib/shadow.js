'use strict';
/**
 * Shadow mode: for the share of keys between rollout_percent and
 * shadow_percent the caller gets the in-app answer, and normd does the same
 * work in the background so the two can be compared before the rollout is
 * raised. A shadow call is never on the caller's latency path, never moves
 * the breaker, and never queues: past `maxConcurrent` calls out, or while the
 * breaker is not closed, it is skipped.
 */

const crypto = require('node:crypto');
const { classify } = require('./answer');

/** How many mismatching keys stats() keeps, most recent last. */
const MISMATCH_KEYS_KEPT = 16;

/**
 * The default view of an in-app result as canonical bytes: a Buffer, a
 * Uint8Array or a string is taken as the canonical JSON itself.
 * @param {unknown} result
 * @returns {Buffer|null} null when the result is not bytes
 */
function bytesOf(result) {
  if (Buffer.isBuffer(result)) return result;
  if (result instanceof Uint8Array) return Buffer.from(result.buffer, result.byteOffset, result.byteLength);
  if (typeof result === 'string') return Buffer.from(result, 'utf8');
  return null;
}

/** `sha-256=:<base64>:`, the form of X-Normd-Digest. */
function digestOf(bytes) {
  return `sha-256=:${crypto.createHash('sha256').update(bytes).digest('base64')}:`;
}

class Shadow {
  /**
   * @param {object} o
   * @param {number} o.maxConcurrent shadow calls out at once; past it calls are skipped
   * @param {((result: any) => Buffer|Uint8Array|string)|undefined} o.canonical in-app result → its canonical bytes
   * @param {((inapp: any, normd: object) => boolean|Promise<boolean>)|undefined} o.compare replaces the digest comparison
   * @param {() => boolean} o.breakerClosed whether real calls currently flow
   * @param {(path: string, headers: Record<string,string>, payload: Buffer, timeoutMs: number) => Promise<any>} o.send one exchange with normd
   */
  constructor(o) {
    this._max = o.maxConcurrent;
    this._canonical = o.canonical;
    this._compare = o.compare;
    this._breakerClosed = o.breakerClosed;
    this._send = o.send;
    this.inFlight = 0;
    this._closed = false;
    this.reset();
  }

  reset() {
    this.c = { started: 0, compared: 0, matches: 0, mismatches: 0, normd_failures: 0, skipped: 0, compare_errors: 0 };
    /** @type {Array<string|number|null>} */
    this.mismatchKeys = [];
  }

  /**
   * Decide (synchronously, so stats() is exact once norm() resolves) whether
   * to send this shadowed call, and if so send it in the background.
   * @param {any} result what the in-app path returned to the caller
   * @param {string|number|undefined} key
   * @param {{path: string, headers: Record<string,string>, payload: Buffer}} req the call's own request
   * @param {number} timeoutMs
   */
  start(result, key, req, timeoutMs) {
    if (!this._breakerClosed() || this.inFlight >= this._max) {
      this.c.skipped++;
      return;
    }
    // Hash now and keep 50 bytes, rather than hold the in-app bytes across the
    // round trip; with a custom compare the result itself has to be kept.
    let expected = null;
    if (!this._compare) {
      let bytes = null;
      try {
        bytes = bytesOf(this._canonical ? this._canonical(result) : result);
      } catch { /* counted below */ }
      if (bytes === null) {
        this.c.skipped++;
        this.c.compare_errors++;
        return;
      }
      expected = digestOf(bytes);
    }
    this.c.started++;
    this.inFlight++;
    // Counted now, sent on the next turn: building and writing the request is
    // not the caller's latency either.
    setImmediate(() => this._run(req, timeoutMs, expected, result, key === undefined ? null : key));
  }

  _run(req, timeoutMs, expected, result, key) {
    if (this._closed) {
      this.inFlight--;
      this.c.normd_failures++;
      return;
    }
    this._send(req.path, req.headers, req.payload, timeoutMs)
      .then((res) => this._judge(res, expected, result, key), () => { this.c.normd_failures++; })
      .catch(() => { this.c.compare_errors++; })
      .finally(() => { this.inFlight--; });
  }

  /** The client is closed: a shadow call not sent yet never will be. */
  close() {
    this._closed = true;
  }

  async _judge(res, expected, result, key) {
    const a = classify(res);
    if (a.kind === 'error') {
      // normd refuses what the in-app path accepted: the two paths disagree.
      this._count(false, key);
    } else if (a.kind !== 'ok') {
      this.c.normd_failures++;
    } else if (this._compare) {
      this._count(Boolean(await this._compare(result, a.result)), key);
    } else {
      this._count(a.result.digest === expected, key);
    }
  }

  _count(match, key) {
    this.c.compared++;
    if (match) {
      this.c.matches++;
      return;
    }
    this.c.mismatches++;
    this.mismatchKeys.push(key);
    if (this.mismatchKeys.length > MISMATCH_KEYS_KEPT) this.mismatchKeys.shift();
  }

  snapshot() {
    return { ...this.c, in_flight: this.inFlight, mismatch_keys: this.mismatchKeys.slice() };
  }
}

module.exports = { Shadow, bytesOf, digestOf, MISMATCH_KEYS_KEPT };
