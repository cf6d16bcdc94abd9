'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startApp, request, startFakeSidecar, waitFor, FIXTURES } = require('./support/helpers');

const VALID = fs.readFileSync(path.join(FIXTURES, 'valid-order.json'));

// Generous: these tests check routing, not how fast a loaded CI box is.
const SLOW_OK = { NORMD_DEADLINE_MS: '30000' };

async function setup(t, env) {
  const fake = await startFakeSidecar();
  const app = await startApp({ NORMD_SOCKET: fake.socketPath, ...SLOW_OK, ...env });
  t.after(async () => {
    if (app.child.exitCode === null) await app.stop();
    await fake.close();
  });
  return { fake, app };
}

test('ROLLOUT=100: orders go through normd, asking for the same job by query', async (t) => {
  const { fake, app } = await setup(t, { ROLLOUT: '100' });
  assert.deepEqual(app.listening.routing, { mode: 'rollout_env', rollout_percent: 100 });
  const r = await request(app.port, 'POST', '/orders', VALID, { 'x-request-key': 'cust-1' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.path, 'normd');
  assert.deepEqual(fake.last.query, { schema: 'order.schema', encoding: 'gzip', level: '1' });
  assert.equal(fake.last.headers['x-deadline-ms'], '30000');
  const s = (await request(app.port, 'GET', '/stats')).json;
  assert.deepEqual(s.requests.by_path, { normd: 1, inapp: 0 });
  assert.equal(s.client.normd_ok, 1);
});

test('ROLLOUT=0: in-app, normd untouched', async (t) => {
  const { fake, app } = await setup(t, { ROLLOUT: '0' });
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.json.path, 'inapp');
  assert.equal(r.json.reason, 'rollout');
  assert.equal(fake.normRequests, 0);
});

test('normd overloaded → the app answers 200 from its in-app path', async (t) => {
  const { fake, app } = await setup(t, { ROLLOUT: '100' });
  fake.norm = (req, res) => fake.problem(res, 429, 'overloaded');
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.status, 200);
  assert.equal(r.json.path, 'inapp');
  assert.equal(r.json.reason, 'overloaded');
  const s = (await request(app.port, 'GET', '/stats')).json;
  assert.equal(s.client.fallback_by_reason.overloaded, 1);
  assert.deepEqual(s.requests.inapp_reasons, { overloaded: 1 });
});

test('normd schema_violation → 422, not a fallback', async (t) => {
  const { fake, app } = await setup(t, { ROLLOUT: '100', NORMD_PROFILE: 'orders' });
  const errors = [{ instance_path: '/items/0/qty', schema_path: '/x', message: 'too small' }];
  fake.norm = (req, res) => fake.problem(res, 422, 'schema_violation', { errors });
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.status, 422);
  assert.equal(r.json.path, 'normd');
  assert.deepEqual(r.json.errors, errors);
  assert.deepEqual(fake.last.query, { profile: 'orders' });
  const s = (await request(app.port, 'GET', '/stats')).json;
  assert.equal(s.client.errors, 1);
  assert.equal(s.client.fallback_total, 0);
});

test('NORMD_FLAGS_FROM_SIDECAR=1: rollout comes from GET /flags', async (t) => {
  const { fake, app } = await setup(t, { NORMD_FLAGS_FROM_SIDECAR: '1' });
  assert.equal(app.listening.routing.mode, 'sidecar_flags');
  // The first GET /flags is in flight at startup; poll /stats (bounded) until loaded.
  const s = await waitFor(async () => {
    const j = (await request(app.port, 'GET', '/stats')).json;
    return j.client.flags.loaded ? j : null;
  }, { what: 'flags loaded from the sidecar' });
  assert.equal(s.client.flags.rollout_percent, 100);
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.json.path, 'normd');
  assert.equal(fake.normRequests, 1);
});

test('sidecar socket missing → in-app (connection), the app keeps answering', async (t) => {
  const app = await startApp({ NORMD_SOCKET: '/nonexistent/normd.sock', ROLLOUT: '100', ...SLOW_OK });
  t.after(async () => { if (app.child.exitCode === null) await app.stop(); });
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.status, 200);
  assert.equal(r.json.path, 'inapp');
  assert.equal(r.json.reason, 'connection');
});
