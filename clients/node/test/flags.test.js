'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { NormdClient, parseFlag } = require('..');
const { startFakeNormd, waitFor, problem } = require('./support/fake-normd');

/** Budgets far beyond what a healthy run needs: no test hinges on machine speed. */
const SLOW_OK = { deadlineMs: 30000, flagsTimeoutMs: 30000 };

/**
 * @param {import('node:test').TestContext} t
 */
async function setup(t, clientOpts = {}) {
  const fake = await startFakeNormd();
  const client = new NormdClient({ socketPath: fake.socketPath, fallback: (b, ctx) => ctx.reason, flagsRefreshMs: 0, ...SLOW_OK, ...clientOpts });
  t.after(async () => {
    client.close();
    await fake.close();
  });
  return { fake, client };
}

test('the first GET /flags is fetched at construction; ready() reports it', async (t) => {
  const { fake, client } = await setup(t);
  fake.flags = { version: 'abc', mtime: '2024-01-01T00:00:00Z', flags: { norm: { enabled: true, rollout_percent: 5 } } };
  // The fetch started in the constructor may have been answered before the
  // assignment above; a refresh settles it either way.
  await client.ready();
  await client.refreshFlags();
  const f = client.stats().flags;
  assert.equal(f.loaded, true);
  assert.equal(f.enabled, true);
  assert.equal(f.rollout_percent, 5);
  assert.equal(f.version, 'abc');
  assert.equal(f.mtime, '2024-01-01T00:00:00Z');
  assert.equal(f.last_error, null);
});

test('until flags are known, calls fall back as unavailable', async (t) => {
  const fake = await startFakeNormd();
  fake.flagsHandler = (req, res) => problem(res, 500, 'internal');
  const client = new NormdClient({ socketPath: fake.socketPath, fallback: (b, ctx) => ctx.reason, flagsRefreshMs: 0, ...SLOW_OK });
  t.after(async () => { client.close(); await fake.close(); });
  assert.equal(await client.ready(), false);
  assert.equal((await client.norm('{}', { key: 'k' })).reason, 'unavailable');
  assert.equal(fake.normRequests, 0);
  const f = client.stats().flags;
  assert.equal(f.loaded, false);
  assert.match(f.last_error, /500/);
  // and once normd answers, routing starts
  fake.flagsHandler = null;
  assert.equal(await client.refreshFlags(), true);
  assert.equal((await client.norm('{}', { key: 'k' })).path, 'normd');
});

test('a failed first GET /flags is retried sooner than the refresh period', async (t) => {
  const fake = await startFakeNormd();
  let refused = 0;
  // normd still starting: the first two fetches fail.
  fake.flagsHandler = (req, res) => {
    if (++refused >= 2) fake.flagsHandler = null;
    problem(res, 503, 'not_ready');
  };
  const client = new NormdClient({ socketPath: fake.socketPath, fallback: (b, ctx) => ctx.reason, flagsRefreshMs: 3600000, ...SLOW_OK });
  t.after(async () => { client.close(); await fake.close(); });
  assert.equal(await client.ready(), false);
  // With an hour between refreshes, only the first-fetch retry can load them.
  await waitFor(() => client.stats().flags.loaded, { maxMs: 20000, what: 'the flags to load' });
  assert.equal(fake.flagsRequests, 3);
  assert.equal((await client.norm('{}', { key: 'k' })).path, 'normd');
});

test('refreshFlags() picks up a change of rollout and of enabled', async (t) => {
  const { fake, client } = await setup(t);
  await client.ready();
  assert.equal((await client.norm('{}', { key: 'k' })).path, 'normd');
  fake.setFlag({ enabled: false, rollout_percent: 100 }, 'v2');
  assert.equal(await client.refreshFlags(), true);
  assert.equal((await client.norm('{}', { key: 'k' })).reason, 'disabled');
  fake.setFlag({ enabled: true, rollout_percent: 0 }, 'v3');
  await client.refreshFlags();
  assert.equal((await client.norm('{}', { key: 'k' })).reason, 'rollout');
  assert.equal(client.stats().flags.version, 'v3');
});

test('the background timer refreshes the flags', async (t) => {
  const { fake, client } = await setup(t, { flagsRefreshMs: 20 });
  await client.ready();
  fake.setFlag({ enabled: true, rollout_percent: 42 }, 'timer-v2');
  await waitFor(() => client.stats().flags.version === 'timer-v2', { maxMs: 10000, what: 'a background refresh' });
  assert.equal(client.stats().flags.rollout_percent, 42);
});

test('stale but usable: failed refreshes keep the last good flags', async (t) => {
  const { fake, client } = await setup(t);
  fake.setFlag({ enabled: true, rollout_percent: 25 }, 'good');
  await client.ready();
  assert.equal(await client.refreshFlags(), true);
  const bad = [
    (req, res) => problem(res, 503, 'not_ready'),
    (req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{not json'); },
    (req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"flags":{"norm":{"enabled":"yes"}}}'); },
    (req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"flags":{"norm":{"rollout_percent":"50"}}}'); },
    // JSON that is not a flags document must not move the rollout either.
    ...['[]', '[1,2]', '{}', '{"status":"ok"}', '{"flags":[]}', '{"flags":{"norm":[]}}', '{"flags":null}'].map(
      (body) => (req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body); },
    ),
    () => { /* hang past the timeout below */ },
    (req) => req.socket.destroy(),
  ];
  for (const h of bad) {
    fake.flagsHandler = h;
    assert.equal(await client.refreshFlags({ timeoutMs: 50 }), false);
    const f = client.stats().flags;
    assert.equal(f.version, 'good');
    assert.equal(f.enabled, true);
    assert.equal(f.rollout_percent, 25);
  }
  assert.equal(client.stats().flags.refresh_failures, bad.length);
  assert.notEqual(client.stats().flags.last_error, null);

  fake.flagsHandler = null;
  assert.equal(await client.refreshFlags(), true);
  assert.equal(client.stats().flags.last_error, null);
});

test('concurrent refreshes share one request', async (t) => {
  const { fake, client } = await setup(t);
  await client.ready();
  const before = fake.flagsRequests;
  const results = await Promise.all([client.refreshFlags(), client.refreshFlags(), client.refreshFlags()]);
  assert.deepEqual(results, [true, true, true]);
  assert.equal(fake.flagsRequests, before + 1);
});

test('parseFlag: missing flag or fields mean enabled at 100 %, as normd defaults', () => {
  assert.deepEqual(parseFlag(undefined), { enabled: true, rollout_percent: 100, shadow_percent: 0 });
  assert.deepEqual(parseFlag({}), { enabled: true, rollout_percent: 100, shadow_percent: 0 });
  assert.deepEqual(parseFlag({ enabled: false }), { enabled: false, rollout_percent: 100, shadow_percent: 0 });
  assert.deepEqual(parseFlag({ enabled: true, rollout_percent: 150 }), { enabled: true, rollout_percent: 100, shadow_percent: 0 });
  assert.throws(() => parseFlag('on'));
  assert.throws(() => parseFlag({ rollout_percent: null }));
});

test('a flags document without our flag routes 100 %', async (t) => {
  const { fake, client } = await setup(t);
  fake.flags = { version: 'x', mtime: null, flags: { compress: { enabled: false, rollout_percent: 0 } } };
  await client.ready();
  await client.refreshFlags();
  assert.equal(client.stats().flags.rollout_percent, 100);
  assert.equal((await client.norm('{}', { key: 'k' })).path, 'normd');
});
