'use strict';
/**
 * Sticky rollout: a key always lands in the same bucket 0..99, so raising
 * rollout_percent only ever adds keys to normd and a given order/user does not
 * flap between the two paths.
 *
 * The hash is FNV-1a 32-bit over the key's UTF-8 bytes, taken mod 100. It is
 * written down here so a Java/Go/Python client can reproduce the same split:
 *   h = 0x811c9dc5; for each byte b: h = (h ^ b) * 0x01000193 mod 2^32
 *   bucket = h mod 100; routed to normd iff bucket < floor(rollout_percent)
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * @param {string} str
 * @returns {number} unsigned 32-bit FNV-1a hash of the UTF-8 bytes
 */
function fnv1a32(str) {
  const bytes = Buffer.from(str, 'utf8');
  let h = FNV_OFFSET;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, FNV_PRIME) >>> 0;
  }
  return h >>> 0;
}

/**
 * @param {string|number} key
 * @returns {number} bucket 0..99
 */
function bucketOf(key) {
  return fnv1a32(String(key)) % 100;
}

/**
 * Clamp a flag value to an integer percent 0..100 (NaN → 0).
 * @param {unknown} p
 */
function clampPercent(p) {
  const n = Math.floor(Number(p));
  if (!Number.isFinite(n) || n <= 0) return 0;
  return n >= 100 ? 100 : n;
}

/**
 * Whether the key is inside the rollout. Without a key the decision is
 * random per call (not sticky), which still honours the percentage.
 * @param {string|number|undefined|null} key
 * @param {number} percent
 */
function inRollout(key, percent) {
  const p = clampPercent(percent);
  if (p === 0) return false;
  if (p === 100) return true;
  const bucket = key === undefined || key === null ? Math.floor(Math.random() * 100) : bucketOf(key);
  return bucket < p;
}

module.exports = { fnv1a32, bucketOf, inRollout, clampPercent };
