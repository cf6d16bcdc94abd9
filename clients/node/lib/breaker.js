'use strict';
/**
 * Consecutive-failure circuit breaker. Owns only the state machine; it never
 * performs I/O or reads the wall clock except through the injected `now`, so
 * tests drive the cooldown without sleeping.
 *
 *   closed --N consecutive failures--> open --cooldown elapsed--> half_open
 *   half_open: exactly one probe call passes; success → closed, failure → open
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
  }

  /**
   * Ask to send one call. Returns false when the call must short-circuit.
   * A `true` in half_open hands out the single probe slot.
   */
  tryAcquire() {
    if (this.state === 'closed') return true;
    if (this.state === 'open') {
      if (this._now() - this._openedAt < this.cooldownMs) return false;
      this.state = 'half_open';
      this._probeInFlight = false;
    }
    // half_open
    if (this._probeInFlight) return false;
    this._probeInFlight = true;
    return true;
  }

  /** normd answered sanely (200, or a contract error that proves it is alive). */
  onSuccess() {
    this.consecutiveFailures = 0;
    this._probeInFlight = false;
    this.state = 'closed';
  }

  /** normd failed (overloaded, unavailable, deadline, connection, timeout, 5xx). */
  onFailure() {
    this.consecutiveFailures++;
    if (this.state === 'half_open' || (this.state === 'closed' && this.consecutiveFailures >= this.failureThreshold)) {
      this._open();
    }
  }

  _open() {
    this.state = 'open';
    this._openedAt = this._now();
    this._probeInFlight = false;
    this.openedTotal++;
  }

  /** Current state, advancing open → half_open lazily for reporting. */
  snapshot() {
    let state = this.state;
    if (state === 'open' && this._now() - this._openedAt >= this.cooldownMs) state = 'half_open';
    return { state, consecutive_failures: this.consecutiveFailures, opened_total: this.openedTotal };
  }
}

module.exports = { CircuitBreaker };
