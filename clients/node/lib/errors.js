'use strict';
/**
 * Error types the client surfaces to its caller. Anything that is normd's
 * trouble (overload, not ready, deadline, connection) never becomes an error:
 * it becomes a fallback. These are what is left.
 */

/**
 * normd answered with a contract error (400, 404, 405, 413, 415, 422): the
 * request or the data is wrong, the in-app path would not help, so the caller
 * gets the RFC 9457 problem instead of a silent fallback.
 */
class NormdError extends Error {
  /**
   * @param {object} problem parsed problem+json body (or a synthetic one)
   * @param {{status: number, requestId?: string}} info
   */
  constructor(problem, info) {
    const code = typeof problem.code === 'string' ? problem.code : `http_${info.status}`;
    const detail = problem.detail || problem.title || 'normd rejected the request';
    super(`normd ${info.status} ${code}: ${detail}`);
    this.name = 'NormdError';
    /** HTTP status normd answered. */
    this.status = info.status;
    /** Stable machine-readable code from the problem (e.g. "schema_violation"). */
    this.code = code;
    /** The whole problem document. */
    this.problem = problem;
    /** `errors` of a schema_violation, if any. */
    this.errors = Array.isArray(problem.errors) ? problem.errors : undefined;
    /** X-Request-Id echoed by normd, for finding the log line. */
    this.requestId = info.requestId;
  }
}

/**
 * normd was not used (for `reason`) and no fallback function was given, so
 * there is nothing to answer with.
 */
class NormdUnavailableError extends Error {
  /**
   * @param {string} reason one of the fallback reasons
   * @param {Error} [cause]
   */
  constructor(reason, cause) {
    super(`normd not used (${reason}) and no fallback function configured`, cause ? { cause } : undefined);
    this.name = 'NormdUnavailableError';
    this.code = 'no_fallback';
    this.reason = reason;
  }
}

/** norm() was called after close(). */
class NormdClosedError extends Error {
  constructor() {
    super('normd client is closed');
    this.name = 'NormdClosedError';
    this.code = 'client_closed';
  }
}

module.exports = { NormdError, NormdUnavailableError, NormdClosedError };
