'use strict';
/**
 * Consecutive-failure circuit breaker. Owns only the state machine; it never
 * performs I/O or reads the wall clock except through the injected `now`, so
 * tests drive the cooldown without sleeping.
 *
 *   closed --N consecutive failures--> open --cooldown elapsed--> half_open
 *   half_open: exactly one probe call passes; success → closed, failure → open
 *
 * A call gets a ticket from tryAcquire() and hands it back with its outcome. A
 * ticket from before the last open or close (a slow call that was already out
 * when the breaker opened) no longer moves the breaker: a late 200 must not
 * close an open breaker without its cooldown and probe, and a late failure
 * must not re-open one its probe just closed.
 *
 * A ticket is a small integer, `epoch * 2 + (probe ? 1 : 0)`, not an object: it
 * lives as long as the call, and the client keeps nothing per call on the
 * app's heap that it can avoid (README, "Per-call cost").
 */

class CircuitBreaker {
  /**
   * @param {{failureThreshold?: number, cooldownMs?: number, now?: () => number}} [opts]
   */
  constructor(opts = {}) {
    const threshold = opts.failureThreshold ?? 5;
    const cooldown = opts.cooldownMs ?? 5000;
    if (!Number.isInteger(threshold) || threshold < 1) throw new TypeError('breaker.failureThreshold must be an integer >= 1');
    if (!Number.isFinite(cooldown) || cooldown < 0) throw new TypeError('breaker.cooldownMs must be a number >= 0');
    this.failureThreshold = threshold;
    this.cooldownMs = cooldown;
    this._now = opts.now || (() => performance.now());
    /** @type {'closed'|'open'|'half_open'} */
    this.state = 'closed';
    this.consecutiveFailures = 0;
    this.openedTotal = 0;
    this._openedAt = 0;
    this._probeInFlight = false;
    /** Bumped on every open and every close, so tickets from before are stale. */
    this._epoch = 0;
  }

  /**
   * Ask to send one call. Returns -1 when the call must short-circuit, else the
   * call's ticket (in half_open, the single probe's).
   * @returns {number}
   */
  tryAcquire() {
    if (this.state === 'closed') return this._epoch * 2;
    if (this.state === 'open') {
      if (this._now() - this._openedAt < this.cooldownMs) return -1;
      this.state = 'half_open';
      this._probeInFlight = false;
    }
    // half_open
    if (this._probeInFlight) return -1;
    this._probeInFlight = true;
    return this._epoch * 2 + 1;
  }

  /** @param {number} ticket @returns {boolean} whether it is from the current epoch */
  _current(ticket) {
    return Math.floor(ticket / 2) === this._epoch;
  }

  /**
   * normd answered sanely (200, or a contract error that proves it is alive).
   * @param {number} ticket
   */
  onSuccess(ticket) {
    if (!this._current(ticket)) return;
    if (this.state === 'closed') {
      this.consecutiveFailures = 0;
    } else if (this.state === 'half_open' && ticket % 2 === 1) {
      this.consecutiveFailures = 0;
      this._probeInFlight = false;
      this.state = 'closed';
      this._epoch++;
    }
  }

  /**
   * normd failed (overloaded, unavailable, deadline, connection, timeout, 5xx).
   * @param {number} ticket
   */
  onFailure(ticket) {
    if (!this._current(ticket)) return;
    if (this.state === 'closed') {
      this.consecutiveFailures++;
      if (this.consecutiveFailures >= this.failureThreshold) this._open();
    } else if (this.state === 'half_open' && ticket % 2 === 1) {
      this.consecutiveFailures++;
      this._open();
    }
  }

  _open() {
    this.state = 'open';
    this._openedAt = this._now();
    this._probeInFlight = false;
    this.openedTotal++;
    this._epoch++;
  }

  /** Current state, advancing open → half_open lazily for reporting. */
  snapshot() {
    let state = this.state;
    if (state === 'open' && this._now() - this._openedAt >= this.cooldownMs) state = 'half_open';
    return { state, consecutive_failures: this.consecutiveFailures, opened_total: this.openedTotal };
  }
}

module.exports = { CircuitBreaker };
