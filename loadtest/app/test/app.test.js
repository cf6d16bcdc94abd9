'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startApp, request, FIXTURES } = require('./support/helpers');

const VALID = fs.readFileSync(path.join(FIXTURES, 'valid-order.json'));
const INVALID = fs.readFileSync(path.join(FIXTURES, 'invalid-order.json'));

test('in-app mode: orders are processed, refused, and /stats moves', async (t) => {
  const app = await startApp({});
  t.after(async () => { if (app.child.exitCode === null) await app.stop(); });
  assert.equal(app.listening.routing.mode, 'inapp_only');
  assert.equal(app.listening.host, '127.0.0.1');

  const s0 = (await request(app.port, 'GET', '/stats')).json;
  assert.equal(s0.requests.total, 0);
  assert.equal(s0.latency.count, 0);
  assert.equal(s0.client, null);
  assert.ok(s0.process.rss_bytes > 0);
  assert.ok(s0.process.heap_used_bytes > 0);
  for (const k of ['count', 'p50', 'p95', 'p99', 'max', 'total']) assert.equal(typeof s0.gc[k], 'number', `gc.${k}`);
  assert.equal(typeof s0.event_loop_delay.p99, 'number');
  // The heap per V8 space: what heap_total_bytes is made of (the new space is
  // what grows between the two rollouts, see the README).
  const spaces = s0.process.heap_spaces;
  for (const name of ['new_space', 'old_space']) {
    assert.ok(spaces[name].size_bytes > 0, `${name}.size_bytes`);
    assert.ok(spaces[name].used_bytes > 0 && spaces[name].used_bytes <= spaces[name].size_bytes, `${name}.used_bytes`);
  }
  const committed = Object.values(spaces).reduce((sum, sp) => sum + sp.size_bytes, 0);
  // Two process.memoryUsage()/getHeapSpaceStatistics() reads: allow for a GC in between.
  assert.ok(Math.abs(committed - s0.process.heap_total_bytes) <= 4 * 1024 * 1024, `${committed} vs ${s0.process.heap_total_bytes}`);

  const ok = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(ok.status, 200);
  assert.equal(ok.json.ok, true);
  assert.equal(ok.json.path, 'inapp');
  assert.ok(ok.json.bytes > 20);

  const bad = await request(app.port, 'POST', '/orders', INVALID);
  assert.equal(bad.status, 422);
  assert.equal(bad.json.ok, false);
  assert.equal(bad.json.error, 'schema_violation');
  const paths = bad.json.errors.map((e) => e.instance_path).sort();
  assert.deepEqual(paths, ['/items/0/qty', '/status']);

  const notJson = await request(app.port, 'POST', '/orders', '{"order_id": ');
  assert.equal(notJson.status, 400);
  assert.equal(notJson.json.error, 'invalid_json');

  assert.equal((await request(app.port, 'GET', '/orders')).status, 405);
  assert.equal((await request(app.port, 'GET', '/nope')).status, 404);

  const s1 = (await request(app.port, 'GET', '/stats')).json;
  assert.equal(s1.requests.total, 3);
  assert.deepEqual(s1.requests.by_path, { normd: 0, inapp: 1 });
  assert.deepEqual(s1.requests.by_status, { 200: 1, 400: 1, 422: 1 });
  assert.equal(s1.latency.count, 3);
  assert.ok(s1.latency.max > 0);
  assert.ok(s1.latency.p50 <= s1.latency.p95 && s1.latency.p95 <= s1.latency.p99 && s1.latency.p99 <= s1.latency.max);
  assert.ok(s1.process.cpu_user_ms + s1.process.cpu_system_ms >= 0);

  const reset = await request(app.port, 'POST', '/stats/reset');
  assert.equal(reset.status, 200);
  const s2 = (await request(app.port, 'GET', '/stats')).json;
  assert.equal(s2.requests.total, 0);
  assert.equal(s2.latency.count, 0);
  assert.deepEqual(s2.requests.by_status, {});

  const { code, signal } = await app.stop();
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.ok(app.lines.some((l) => l.msg === 'stopped'));
});

test('a body over MAX_BODY_BYTES is refused with 413', async (t) => {
  const app = await startApp({ MAX_BODY_BYTES: '64' });
  t.after(async () => { if (app.child.exitCode === null) await app.stop(); });
  const r = await request(app.port, 'POST', '/orders', VALID);
  assert.equal(r.status, 413);
});

test('bad configuration exits 64 and names every problem', async () => {
  const { spawnSync } = require('node:child_process');
  const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'server.js')], {
    env: { PATH: process.env.PATH, PORT: 'eighty', ROLLOUT: '101' },
    encoding: 'utf8',
    timeout: 20000,
  });
  assert.equal(r.status, 64);
  assert.match(r.stderr, /SCHEMA/);
  assert.match(r.stderr, /PORT=eighty/);
  assert.match(r.stderr, /ROLLOUT=101/);
});
