'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { CircuitBreaker } = require('..');

function clocked(opts) {
  const clock = { t: 1000 };
  const b = new CircuitBreaker({ ...opts, now: () => clock.t });
  return { b, clock };
}

/** One call through the breaker that ends in `outcome` ('ok' or 'fail'). */
function call(b, outcome) {
  const ticket = b.tryAcquire();
  assert.ok(ticket >= 0, 'the breaker let the call through');
  if (outcome === 'ok') b.onSuccess(ticket);
  else b.onFailure(ticket);
  return ticket;
}

test('opens after N consecutive failures, a success in between resets the count', () => {
  const { b } = clocked({ failureThreshold: 3, cooldownMs: 100 });
  call(b, 'fail'); call(b, 'fail'); call(b, 'ok');
  call(b, 'fail'); call(b, 'fail');
  assert.equal(b.state, 'closed');
  call(b, 'fail');
  assert.equal(b.state, 'open');
  assert.equal(b.tryAcquire(), -1);
  assert.equal(b.snapshot().opened_total, 1);
});

test('half-open after the cooldown lets exactly one probe through; success closes', () => {
  const { b, clock } = clocked({ failureThreshold: 1, cooldownMs: 100 });
  call(b, 'fail');
  assert.equal(b.tryAcquire(), -1);
  clock.t += 99;
  assert.equal(b.tryAcquire(), -1);
  clock.t += 1;
  assert.equal(b.snapshot().state, 'half_open');
  const probe = b.tryAcquire();
  assert.equal(probe % 2, 1, 'the probe');
  assert.equal(b.tryAcquire(), -1, 'no second probe while the first is out');
  b.onSuccess(probe);
  assert.equal(b.state, 'closed');
  assert.equal(b.tryAcquire() % 2, 0);
  assert.equal(b.tryAcquire() % 2, 0);
});

test('a failed probe re-opens for a fresh cooldown', () => {
  const { b, clock } = clocked({ failureThreshold: 2, cooldownMs: 50 });
  call(b, 'fail'); call(b, 'fail');
  clock.t += 50;
  call(b, 'fail');
  assert.equal(b.state, 'open');
  assert.equal(b.snapshot().opened_total, 2);
  clock.t += 49;
  assert.equal(b.tryAcquire(), -1);
  clock.t += 1;
  assert.ok(b.tryAcquire() >= 0);
});

test('a call that was out when the breaker opened does not move it when it ends', () => {
  const { b, clock } = clocked({ failureThreshold: 2, cooldownMs: 100 });
  const slow = b.tryAcquire(); // sent while closed, answered late
  const slowFailure = b.tryAcquire();
  call(b, 'fail'); call(b, 'fail');
  assert.equal(b.state, 'open');
  b.onSuccess(slow);
  assert.equal(b.state, 'open', 'a late 200 does not skip the cooldown and its probe');
  assert.equal(b.tryAcquire(), -1);
  clock.t += 100;
  const probe = b.tryAcquire();
  assert.equal(probe % 2, 1);
  b.onSuccess(probe);
  assert.equal(b.state, 'closed');
  b.onFailure(slowFailure);
  assert.equal(b.snapshot().consecutive_failures, 0, 'nor does a late failure count after the close');
});

test('rejects nonsense settings', () => {
  assert.throws(() => new CircuitBreaker({ failureThreshold: 0 }), TypeError);
  assert.throws(() => new CircuitBreaker({ cooldownMs: -1 }), TypeError);
});
