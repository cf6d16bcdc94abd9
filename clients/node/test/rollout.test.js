'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { fnv1a32, bucketOf, inRollout } = require('..');
const { clampPercent } = require('../lib/rollout');

test('fnv1a32 matches the published FNV-1a 32-bit vectors', () => {
  assert.equal(fnv1a32(''), 0x811c9dc5);
  assert.equal(fnv1a32('a'), 0xe40c292c);
  assert.equal(fnv1a32('foobar'), 0xbf9cf968);
});

test('a key always gets the same bucket (sticky)', () => {
  for (let i = 0; i < 200; i++) {
    const key = `order-${i}`;
    const b = bucketOf(key);
    assert.ok(b >= 0 && b < 100);
    for (let j = 0; j < 3; j++) {
      assert.equal(bucketOf(key), b);
      assert.equal(inRollout(key, 37), b < 37);
    }
  }
});

test('1000 keys at 25 % route between 200 and 300', () => {
  let routed = 0;
  for (let i = 0; i < 1000; i++) if (inRollout(`key-${i}`, 25)) routed++;
  assert.ok(routed >= 200 && routed <= 300, `routed ${routed}`);
});

test('raising the percentage only adds keys', () => {
  for (let i = 0; i < 1000; i++) {
    const key = `user:${i}`;
    if (inRollout(key, 10)) assert.ok(inRollout(key, 20), key);
  }
});

test('0 % and 100 % are absolute, out-of-range values clamp', () => {
  for (let i = 0; i < 300; i++) {
    assert.equal(inRollout(`k${i}`, 0), false);
    assert.equal(inRollout(`k${i}`, 100), true);
    assert.equal(inRollout(`k${i}`, -5), false);
    assert.equal(inRollout(`k${i}`, 250), true);
  }
  assert.equal(clampPercent(NaN), 0);
  assert.equal(clampPercent(25.9), 25);
});

test('without a key the split is random but still honours the percentage', () => {
  let routed = 0;
  for (let i = 0; i < 2000; i++) if (inRollout(undefined, 50)) routed++;
  // 2000 fair coin flips: sigma is ~22, so 776..1224 is ±10 sigma; it cannot flake in practice.
  assert.ok(routed > 776 && routed < 1224, `routed ${routed}`);
});
