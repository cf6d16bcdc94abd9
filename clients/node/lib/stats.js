'use strict';
/** Counters of the caller's calls, by outcome. */

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
  'server_error', // 500 internal, any other unexpected status, a 200 without X-Normd-Digest
  'shadow', // shadowed call: in-app answer, normd compared in the background
]);

/** calls = normd_ok + fallback_total + errors, once every call has ended. */
class CallCounters {
  constructor() {
    this.reset();
  }

  reset() {
    this.calls = 0;
    this.normd_ok = 0;
    this.fallback_total = 0;
    /** @type {Record<string, number>} */
    this.fallback_by_reason = {};
    for (const r of REASONS) this.fallback_by_reason[r] = 0;
    this.errors = 0;
    /** @type {Record<string, number>} */
    this.errors_by_code = {};
  }

  /** @param {string} reason */
  fallback(reason) {
    this.fallback_total++;
    this.fallback_by_reason[reason] = (this.fallback_by_reason[reason] || 0) + 1;
  }

  /** @param {string} code */
  error(code) {
    this.errors++;
    this.errors_by_code[code] = (this.errors_by_code[code] || 0) + 1;
  }

  snapshot() {
    return {
      calls: this.calls,
      normd_ok: this.normd_ok,
      fallback_total: this.fallback_total,
      fallback_by_reason: { ...this.fallback_by_reason },
      errors: this.errors,
      errors_by_code: { ...this.errors_by_code },
    };
  }
}

module.exports = { REASONS, CallCounters };
