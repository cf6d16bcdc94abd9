'use strict';
/**
 * Which way one call goes, decided before any I/O: from the flag (or a fixed
 * rollout) and the sticky bucket of the call's key. The breaker comes after.
 */

const { bucketOf } = require('./rollout');

/**
 * @param {string|number|undefined|null} key the call's rollout key
 * @param {{enabled: boolean, rollout_percent: number, shadow_percent: number}|null} flag last good flag, null if never loaded
 * @param {number|undefined} rolloutOverride a fixed rollout (no flags, no shadow)
 * @returns {string|null} null when the call goes to normd, else the reason it
 *   does not (`shadow`: in-app, with normd called in the background)
 */
function route(key, flag, rolloutOverride) {
  let rollout = 0;
  let shadow = 0;
  if (rolloutOverride !== undefined) {
    rollout = rolloutOverride;
  } else {
    if (!flag) return 'unavailable';
    if (!flag.enabled) return 'disabled';
    rollout = flag.rollout_percent;
    shadow = flag.shadow_percent;
  }
  // One bucket for both shares, so a key is in exactly one of them. Without a
  // key the bucket is random per call: the percentages hold, stickiness does not.
  const bucket = key === undefined || key === null ? Math.floor(Math.random() * 100) : bucketOf(key);
  if (bucket < rollout) return null;
  return bucket < shadow ? 'shadow' : 'rollout';
}

module.exports = { route };
