'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { CircuitBreaker } = require('..');

function clocked(opts) {
  const clock = { t: 1000 };
  const b = new CircuitBreaker({ ...opts, now: () => clock.t });
  return { b, clock };
}

test('opens after N consecutive failures, a success in between resets the count', () => {
  const { b } = clocked({ failureThreshold: 3, cooldownMs: 100 });
  b.onFailure(); b.onFailure(); b.onSuccess();
  b.onFailure(); b.onFailure();
  assert.equal(b.state, 'closed');
  assert.equal(b.tryAcquire(), true);
  b.onFailure();
  assert.equal(b.state, 'open');
  assert.equal(b.tryAcquire(), false);
  assert.equal(b.snapshot().opened_total, 1);
});

test('half-open after the cooldown lets exactly one probe through; success closes', () => {
  const { b, clock } = clocked({ failureThreshold: 1, cooldownMs: 100 });
  b.onFailure();
  assert.equal(b.tryAcquire(), false);
  clock.t += 99;
  assert.equal(b.tryAcquire(), false);
  clock.t += 1;
  assert.equal(b.snapshot().state, 'half_open');
  assert.equal(b.tryAcquire(), true, 'the probe');
  assert.equal(b.tryAcquire(), false, 'no second probe while the first is out');
  b.onSuccess();
  assert.equal(b.state, 'closed');
  assert.equal(b.tryAcquire(), true);
  assert.equal(b.tryAcquire(), true);
});

test('a failed probe re-opens for a fresh cooldown', () => {
  const { b, clock } = clocked({ failureThreshold: 2, cooldownMs: 50 });
  b.onFailure(); b.onFailure();
  clock.t += 50;
  assert.equal(b.tryAcquire(), true);
  b.onFailure();
  assert.equal(b.state, 'open');
  assert.equal(b.snapshot().opened_total, 2);
  clock.t += 49;
  assert.equal(b.tryAcquire(), false);
  clock.t += 1;
  assert.equal(b.tryAcquire(), true);
});

test('rejects nonsense settings', () => {
  assert.throws(() => new CircuitBreaker({ failureThreshold: 0 }), TypeError);
  assert.throws(() => new CircuitBreaker({ cooldownMs: -1 }), TypeError);
});
