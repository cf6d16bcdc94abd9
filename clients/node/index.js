'use strict';
/**
 * @normd/client — reference Node client for the normd sidecar.
 *
 *   const { NormdClient } = require('@normd/client');
 *   const normd = new NormdClient({ socketPath: '/run/normd/normd.sock', fallback: inAppNorm });
 *   const r = await normd.norm(rawBody, { key: orderId, deadlineMs: 20 });
 *   // r.path === 'normd' → r.data is the compressed canonical JSON; 'inapp' → what inAppNorm returned
 */
const { NormdClient } = require('./lib/client');
const { REASONS } = require('./lib/stats');
const { parseFlag } = require('./lib/flags');
const { CircuitBreaker } = require('./lib/breaker');
const { fnv1a32, bucketOf, inRollout } = require('./lib/rollout');
const { NormdError, NormdUnavailableError, NormdClosedError } = require('./lib/errors');

module.exports = {
  NormdClient,
  NormdError,
  NormdUnavailableError,
  NormdClosedError,
  CircuitBreaker,
  REASONS,
  fnv1a32,
  bucketOf,
  inRollout,
  parseFlag,
};
