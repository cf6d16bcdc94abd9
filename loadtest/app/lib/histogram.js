'use strict';
/**
 * A fixed-size log-linear histogram (HDR-like) of non-negative integers,
 * e.g. microseconds. Values below 256 are exact; above, each power of two is
 * split into 128 buckets, so any percentile is within 1/128 (< 0.8 %) of the
 * true value. Memory is constant (3,328 slots) whatever the number of
 * samples, so it can run for the whole life of a load test.
 */

const LINEAR = 256; // exact below this
const SUB = 128; // buckets per power of two above it
const MAX_EXP = 32; // values are clamped to 2^32 - 1
const SLOTS = LINEAR + (MAX_EXP - 8) * SUB;

function indexOf(v) {
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(v); // >= 8
  const shift = e - 7;
  const sub = v >>> shift; // 128..255
  return LINEAR + (e - 8) * SUB + (sub - SUB);
}

/** Middle of the slot's value range. */
function valueOf(idx) {
  if (idx < LINEAR) return idx;
  const k = idx - LINEAR;
  const e = 8 + Math.floor(k / SUB);
  const sub = SUB + (k % SUB);
  const width = 2 ** (e - 7);
  return sub * width + (width - 1) / 2;
}

class Histogram {
  constructor() {
    this.counts = new Float64Array(SLOTS);
    this.reset();
  }

  reset() {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = 0;
  }

  /** @param {number} value non-negative; rounded, clamped to 2^32 - 1 */
  record(value) {
    const v = Math.min(Math.max(0, Math.round(value)), 0xffffffff);
    this.counts[indexOf(v)]++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /**
   * @param {number} p percentile 0..100
   * @returns {number} 0 when empty
   */
  percentile(p) {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < SLOTS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(Math.max(valueOf(i), this.min), this.max);
    }
    return this.max;
  }

  /**
   * Summary with every value divided by `scale` (1000 turns µs into ms).
   * @param {number} [scale]
   */
  summary(scale = 1) {
    const r = (x) => Math.round((x / scale) * 1000) / 1000;
    return {
      count: this.count,
      p50: r(this.percentile(50)),
      p95: r(this.percentile(95)),
      p99: r(this.percentile(99)),
      max: r(this.max),
      mean: this.count ? r(this.sum / this.count) : 0,
      total: r(this.sum),
    };
  }
}

module.exports = { Histogram, indexOf, valueOf };
