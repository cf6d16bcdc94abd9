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
   * Ask to send one call. Returns null when the call must short-circuit, else
   * the call's ticket (in half_open, the single probe's).
   * @returns {{epoch: number, probe: boolean}|null}
   */
  tryAcquire() {
    if (this.state === 'closed') return { epoch: this._epoch, probe: false };
    if (this.state === 'open') {
      if (this._now() - this._openedAt < this.cooldownMs) return null;
      this.state = 'half_open';
      this._probeInFlight = false;
    }
    // half_open
    if (this._probeInFlight) return null;
    this._probeInFlight = true;
    return { epoch: this._epoch, probe: true };
  }

  /**
   * normd answered sanely (200, or a contract error that proves it is alive).
   * @param {{epoch: number, probe: boolean}} ticket
   */
  onSuccess(ticket) {
    if (ticket.epoch !== this._epoch) return;
    if (this.state === 'closed') {
      this.consecutiveFailures = 0;
    } else if (this.state === 'half_open' && ticket.probe) {
      this.consecutiveFailures = 0;
      this._probeInFlight = false;
      this.state = 'closed';
      this._epoch++;
    }
  }

  /**
   * normd failed (overloaded, unavailable, deadline, connection, timeout, 5xx).
   * @param {{epoch: number, probe: boolean}} ticket
   */
  onFailure(ticket) {
    if (ticket.epoch !== this._epoch) return;
    if (this.state === 'closed') {
      this.consecutiveFailures++;
      if (this.consecutiveFailures >= this.failureThreshold) this._open();
    } else if (this.state === 'half_open' && ticket.probe) {
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
