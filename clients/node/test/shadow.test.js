'use strict';
/**
 * Shadow mode against the fake normd: routing of the shadow share, the
 * comparison (default, shadowCanonical, shadowCompare), its counters, and
 * what it must never touch (the caller's answer, the breaker).
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const zlib = require('node:zlib');
const { NormdClient, REASONS } = require('..');
const { startFakeNormd, waitFor, canonical, problem, ok } = require('./support/fake-normd');
const { MISMATCH_KEYS_KEPT } = require('../lib/shadow');

const SLOW_OK = { deadlineMs: 30000, flagsTimeoutMs: 30000 };
// Buckets from clients/conformance/rollout.json.
const BUCKET_0 = 'key-3';
const BUCKET_50 = 'key-18';
const BUCKET_99 = 'key-161';

/**
 * A fake normd whose flag shadows everything above `rollout`, and a client on it.
 * @param {import('node:test').TestContext} t
 */
async function setup(t, { rollout = 0, shadow = 100, ...clientOpts } = {}) {
  const fake = await startFakeNormd();
  fake.setFlag({ enabled: true, rollout_percent: rollout, shadow_percent: shadow });
  const inapp = [];
  const client = new NormdClient({
    socketPath: fake.socketPath,
    flagsRefreshMs: 0,
    fallback: (body, ctx) => { inapp.push(ctx); return canonical(JSON.parse(body)); },
    ...SLOW_OK,
    ...clientOpts,
  });
  t.after(async () => {
    client.close();
    await fake.close();
  });
  assert.equal(await client.ready(), true);
  return { fake, client, inapp };
}

const answered = (client, n) => waitFor(() => {
  const s = client.stats().shadow;
  return s.compared + s.normd_failures + s.compare_errors >= n;
}, { what: `${n} shadow calls answered` });

test('shadow is a fallback reason', () => {
  assert.ok(REASONS.includes('shadow'));
});

test('the shadow share gets the in-app answer; normd gets the same request in the background; digests match', async (t) => {
  const { fake, client, inapp } = await setup(t, { rollout: 20, shadow: 60 });
  const body = '{"b": 2, "a": [1, "x"]}';
  const r = await client.norm(body, { key: BUCKET_50, requestId: 'rid-1', headers: { traceparent: 'tp' } });
  assert.deepEqual(r, { path: 'inapp', reason: 'shadow', data: '{"a":[1,"x"],"b":2}' });
  assert.equal(inapp[0].reason, 'shadow');
  await answered(client, 1);
  assert.equal(fake.normRequests, 1);
  assert.equal(fake.last.body.toString(), body, 'the same body');
  assert.equal(fake.last.headers['x-request-id'], 'rid-1');
  assert.equal(fake.last.headers.traceparent, 'tp');
  const s = client.stats();
  assert.deepEqual(s.shadow, { started: 1, compared: 1, matches: 1, mismatches: 0, normd_failures: 0, skipped: 0, compare_errors: 0, in_flight: 0, mismatch_keys: [] });
  assert.equal(s.fallback_by_reason.shadow, 1);
  assert.equal(s.normd_ok, 0, 'a shadow answer is not a normd answer for the caller');
  assert.equal(s.calls, s.normd_ok + s.fallback_total + s.errors);
  assert.equal(s.flags.shadow_percent, 60);

  // below the rollout: normd; at or above the shadow share: rollout
  assert.equal((await client.norm('{}', { key: BUCKET_0 })).path, 'normd');
  assert.equal((await client.norm('{}', { key: BUCKET_99 })).reason, 'rollout');
  assert.equal(client.stats().shadow.started, 1);
});

test('a mismatch is counted and only its key is kept, the most recent 16', async (t) => {
  const { client } = await setup(t, { fallback: () => Buffer.from('not canonical') });
  const n = MISMATCH_KEYS_KEPT + 4;
  for (let i = 0; i < n; i++) {
    const r = await client.norm('{"a":1}', { key: `k-${i}` });
    assert.equal(r.reason, 'shadow');
    await answered(client, i + 1); // one at a time: below the concurrency bound
  }
  const s = client.stats().shadow;
  assert.equal(s.mismatches, n);
  assert.equal(s.matches, 0);
  assert.deepEqual(s.mismatch_keys, Array.from({ length: MISMATCH_KEYS_KEPT }, (_, i) => `k-${i + 4}`));
  // stats() hands out a copy
  s.mismatch_keys.push('x');
  assert.equal(client.stats().shadow.mismatch_keys.length, MISMATCH_KEYS_KEPT);
});

test('shadowCanonical maps a non-bytes in-app result to its canonical bytes', async (t) => {
  const { client } = await setup(t, {
    fallback: (body) => ({ doc: JSON.parse(body) }),
    shadowCanonical: (result) => canonical(result.doc),
  });
  await client.norm('{"z": 1, "a": 2}', { key: 'k' });
  await answered(client, 1);
  assert.equal(client.stats().shadow.matches, 1);
});

test('shadowCompare replaces the digest comparison and gets both results', async (t) => {
  const seen = [];
  const { client } = await setup(t, {
    fallback: (body) => JSON.parse(body),
    shadowCompare: async (inapp, normd) => {
      seen.push({ inapp, normd });
      return canonical(inapp) === zlib.gunzipSync(normd.data).toString('utf8');
    },
  });
  await client.norm('{"b": 1, "a": 2}', { key: 'k' });
  await answered(client, 1);
  assert.equal(client.stats().shadow.matches, 1);
  assert.deepEqual(seen[0].inapp, { a: 2, b: 1 });
  assert.equal(seen[0].normd.path, 'normd');
  assert.match(seen[0].normd.digest, /^sha-256=:/);
});

test('an in-app result that is not bytes, without shadowCanonical: skipped, counted as a compare error', async (t) => {
  const { fake, client } = await setup(t, { fallback: () => ({ not: 'bytes' }) });
  const r = await client.norm('{"a":1}', { key: 'k' });
  assert.deepEqual(r.data, { not: 'bytes' });
  const s = client.stats().shadow;
  assert.equal(s.skipped, 1);
  assert.equal(s.compare_errors, 1);
  assert.equal(s.started, 0);
  assert.equal(fake.normRequests, 0);
});

test('a throwing shadowCompare never reaches the caller', async (t) => {
  const { client } = await setup(t, { shadowCompare: () => { throw new Error('app bug'); } });
  assert.equal((await client.norm('{"a":1}', { key: 'k' })).reason, 'shadow');
  await answered(client, 1);
  const s = client.stats().shadow;
  assert.equal(s.compare_errors, 1);
  assert.equal(s.compared, 0);
});

test('normd failures of shadow calls are counted and never move the breaker', async (t) => {
  const { fake, client } = await setup(t, { breaker: { failureThreshold: 1 } });
  fake.normHandler = (req, res) => problem(res, 503, 'not_ready');
  for (let i = 0; i < 3; i++) {
    assert.equal((await client.norm('{"a":1}', { key: `k-${i}` })).reason, 'shadow');
    await answered(client, i + 1);
  }
  fake.normHandler = (req, res) => req.socket.destroy();
  await client.norm('{"a":1}', { key: 'k-reset' });
  await answered(client, 4);
  const s = client.stats();
  assert.equal(s.shadow.normd_failures, 4);
  assert.equal(s.breaker.state, 'closed');
  assert.equal(s.breaker.consecutive_failures, 0);
  assert.equal(s.fallback_by_reason.unavailable, 0);
  assert.equal(s.fallback_by_reason.connection, 0);
});

test('a 200 without a digest on a shadow call is a normd failure; a contract error a mismatch', async (t) => {
  const { fake, client } = await setup(t);
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 2 });
    res.end('xx');
  };
  await client.norm('{"a":1}', { key: 'no-digest' });
  await answered(client, 1);
  fake.normHandler = (req, res) => problem(res, 422, 'schema_violation');
  await client.norm('{"a":1}', { key: 'refused' });
  await answered(client, 2);
  const s = client.stats();
  assert.equal(s.shadow.normd_failures, 1);
  assert.equal(s.shadow.mismatches, 1);
  assert.deepEqual(s.shadow.mismatch_keys, ['refused']);
  assert.equal(s.errors, 0, 'the caller saw no error');
});

test('skipped while the breaker is open or half-open; the probe is left to a real call', async (t) => {
  const clock = { t: 0 };
  const { fake, client } = await setup(t, { rollout: 50, shadow: 100, breaker: { failureThreshold: 1, cooldownMs: 1000 }, now: () => clock.t });
  fake.normHandler = (req, res) => problem(res, 500, 'internal');
  assert.equal((await client.norm('{"a":1}', { key: BUCKET_0 })).reason, 'server_error');
  assert.equal((await client.norm('{"a":1}', { key: BUCKET_50 })).reason, 'shadow');
  clock.t += 1000;
  assert.equal((await client.norm('{"a":1}', { key: BUCKET_50 })).reason, 'shadow');
  assert.equal(fake.normRequests, 1);
  assert.equal(client.stats().shadow.skipped, 2);
  fake.normHandler = ok;
  assert.equal((await client.norm('{"a":1}', { key: BUCKET_0 })).path, 'normd', 'the probe is still there');
  assert.equal(client.stats().breaker.state, 'closed');
});

test('at most shadowMaxConcurrent shadow calls out (default 4); past it skipped, not queued', async (t) => {
  const { fake, client } = await setup(t);
  const held = [];
  fake.normHandler = (req, res, body) => held.push(() => ok(req, res, body));
  for (let i = 0; i < 6; i++) assert.equal((await client.norm('{"a":1}', { key: `k-${i}` })).reason, 'shadow');
  let s = client.stats().shadow;
  assert.equal(s.started, 4);
  assert.equal(s.skipped, 2);
  assert.equal(s.in_flight, 4);
  await waitFor(() => held.length === 4, { what: 'normd holding 4 shadow calls' });
  for (const release of held.splice(0)) release();
  await answered(client, 4);
  s = client.stats().shadow;
  assert.equal(s.in_flight, 0);
  assert.equal(s.matches, 4);
  fake.normHandler = ok;
  await client.norm('{"a":1}', { key: 'after' });
  assert.equal(client.stats().shadow.started, 5, 'room again once they are answered');
});

test('a fixed rolloutPercent shadows nothing', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 0 });
  assert.equal((await client.norm('{"a":1}', { key: 'k' })).reason, 'rollout');
  assert.equal(client.stats().shadow.started, 0);
  assert.equal(fake.normRequests, 0);
});

test('resetStats zeroes the shadow counters', async (t) => {
  const { client } = await setup(t, { fallback: () => 'mismatching' });
  await client.norm('{"a":1}', { key: 'k' });
  await answered(client, 1);
  client.resetStats();
  const s = client.stats().shadow;
  assert.equal(s.started + s.compared + s.mismatches, 0);
  assert.deepEqual(s.mismatch_keys, []);
});

test('a shadow call not sent yet when the client closes is never sent', async (t) => {
  const { fake, client } = await setup(t);
  assert.equal((await client.norm('{"a":1}', { key: 'k' })).reason, 'shadow');
  client.close();
  await new Promise((resolve) => setImmediate(resolve));
  const s = client.stats().shadow;
  assert.equal(s.started, 1);
  assert.equal(s.normd_failures, 1);
  assert.equal(s.in_flight, 0);
  assert.equal(fake.normRequests, 0);
});
