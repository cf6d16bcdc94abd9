'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Histogram, indexOf, valueOf } = require('../lib/histogram');

test('exact below 256, within 1/128 above', () => {
  for (let v = 0; v < 256; v++) assert.equal(valueOf(indexOf(v)), v);
  for (const v of [256, 257, 1000, 12345, 999999, 2 ** 31, 2 ** 32 - 1]) {
    const got = valueOf(indexOf(v));
    assert.ok(Math.abs(got - v) / v <= 1 / 128, `${v} → ${got}`);
  }
});

test('bucket indexes are monotonic', () => {
  let prev = -1;
  for (let v = 0; v < 200000; v += 7) {
    const i = indexOf(v);
    assert.ok(i >= prev);
    prev = i;
  }
});

test('percentiles of 1..10000', () => {
  const h = new Histogram();
  for (let v = 1; v <= 10000; v++) h.record(v);
  const near = (a, b) => Math.abs(a - b) / b <= 1 / 128;
  assert.ok(near(h.percentile(50), 5000), String(h.percentile(50)));
  assert.ok(near(h.percentile(95), 9500));
  assert.ok(near(h.percentile(99), 9900));
  assert.equal(h.percentile(100), 10000);
  assert.equal(h.max, 10000);
  const s = h.summary(1000);
  assert.equal(s.count, 10000);
  assert.equal(s.max, 10);
  assert.equal(s.total, 50005);
  h.reset();
  assert.deepEqual(h.summary(), { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0, total: 0 });
});
