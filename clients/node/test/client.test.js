'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { NormdClient, NormdError, NormdUnavailableError, NormdClosedError } = require('..');
const { buildNormRequest } = require('../lib/request');
const { startFakeNormd, waitFor, canonical, problem, ok } = require('./support/fake-normd');

const ORDER = fs.readFileSync(path.join(__dirname, 'fixtures', 'order-0000.json'));

/** In-app stand-in: records why it was called. */
function recorder() {
  const calls = [];
  const fn = (body, ctx) => {
    calls.push(ctx);
    return `inapp:${ctx.reason}`;
  };
  return { fn, calls };
}

/**
 * Tests must not hinge on how fast a loaded CI box is: every call gets a
 * budget far beyond anything a healthy run needs, unless the test is about
 * the deadline itself.
 */
const SLOW_OK = { deadlineMs: 30000, flagsTimeoutMs: 30000 };

/**
 * A fake normd plus a client on it, both torn down after the test.
 * @param {import('node:test').TestContext} t
 */
async function setup(t, clientOpts = {}, fakeOpts = {}) {
  const fake = await startFakeNormd(fakeOpts);
  const rec = recorder();
  const client = new NormdClient({ socketPath: fake.socketPath, fallback: rec.fn, flagsRefreshMs: 0, ...SLOW_OK, ...clientOpts });
  t.after(async () => {
    client.close();
    await fake.close();
  });
  return { fake, client, rec };
}

test('200: returns normd bytes and metadata, sends the deadline and the selection', async (t) => {
  const { fake, client, rec } = await setup(t);
  assert.equal(await client.ready(), true);
  const r = await client.norm(ORDER, { key: 'o-1', profile: 'orders', encoding: 'gzip', level: 1, deadlineMs: 25000, requestId: 'req-42' });
  assert.equal(r.path, 'normd');
  assert.equal(r.transport, 'unix');
  assert.equal(r.encoding, 'gzip');
  assert.equal(r.requestId, 'req-42');
  assert.equal(r.inputBytes, ORDER.length);
  assert.match(r.digest, /^sha-256=:[A-Za-z0-9+/]+=*:$/);
  const canon = zlib.gunzipSync(r.data).toString('utf8');
  assert.equal(canon, canonical(JSON.parse(ORDER.toString('utf8'))));
  assert.equal(r.canonicalBytes, Buffer.byteLength(canon));
  assert.equal(r.outputBytes, r.data.length);

  assert.equal(fake.last.headers['x-deadline-ms'], '25000');
  assert.equal(fake.last.headers['content-type'], 'application/json');
  assert.equal(fake.last.headers['x-request-id'], 'req-42');
  assert.deepEqual(fake.last.query, { profile: 'orders', encoding: 'gzip', level: '1' });
  assert.deepEqual(fake.last.body, ORDER);
  assert.equal(rec.calls.length, 0);
  const s = client.stats();
  assert.equal(s.calls, 1);
  assert.equal(s.normd_ok, 1);
  assert.equal(s.fallback_total, 0);
});

test('objects and strings are sent as JSON', async (t) => {
  const { fake, client } = await setup(t, { schema: 'order.v1' });
  await client.ready();
  await client.norm({ b: 1, a: [true, null] }, { key: 'x' });
  assert.equal(fake.last.body.toString(), '{"b":1,"a":[true,null]}');
  assert.deepEqual(fake.last.query, { schema: 'order.v1' });
  await client.norm('{"z":0}', { key: 'x', schema: 'other' });
  assert.equal(fake.last.body.toString(), '{"z":0}');
  assert.deepEqual(fake.last.query, { schema: 'other' });
});

test('request building: default deadline 20 ms, integer X-Deadline-Ms, defaults overridden per call', () => {
  const r = buildNormRequest('{}', {}, {}, 20);
  assert.equal(r.path, '/norm');
  assert.equal(r.headers['x-deadline-ms'], '20');
  assert.equal(r.deadlineMs, 20);
  assert.equal(r.headers['content-length'], '2');
  assert.equal(buildNormRequest('{}', { deadlineMs: 7.6 }, {}, 20).headers['x-deadline-ms'], '8');
  assert.equal(buildNormRequest('{}', { deadlineMs: 0 }, {}, 20).headers['x-deadline-ms'], '1');
  const q = buildNormRequest(Buffer.from('[]'), { schema: 'b', level: 0, requestId: 'r', headers: { traceparent: 'tp' } }, { profile: 'p', schema: 'a', encoding: 'br' }, 20);
  assert.equal(q.path, '/norm?profile=p&schema=b&encoding=br&level=0');
  assert.equal(q.headers['x-request-id'], 'r');
  assert.equal(q.headers.traceparent, 'tp');
  assert.throws(() => buildNormRequest('{}', { deadlineMs: -1 }, {}, 20), TypeError);
  const c = new NormdClient({ port: 1, rolloutPercent: 0 });
  assert.equal(c._deadlineMs, 20, 'client default');
  c.close();
});

test('request building: the precomputed default path is used only when the call selects nothing', () => {
  const defaults = { profile: 'p', encoding: 'gzip' };
  const { path: dflt } = buildNormRequest('{}', {}, defaults, 20);
  assert.equal(dflt, '/norm?profile=p&encoding=gzip');
  assert.equal(buildNormRequest('{}', { deadlineMs: 5, requestId: 'r' }, defaults, 20, dflt).path, dflt);
  assert.equal(buildNormRequest('{}', { level: 3 }, defaults, 20, dflt).path, '/norm?profile=p&encoding=gzip&level=3');
  assert.equal(buildNormRequest('{}', { profile: '' }, defaults, 20, dflt).path, '/norm?encoding=gzip', 'an empty value drops the default');
  // headers: passed-through ones first, the request's own win over same-named ones
  const h = buildNormRequest('{}', { headers: { traceparent: 'tp', 'x-deadline-ms': '999' } }, defaults, 20, dflt).headers;
  assert.deepEqual(Object.keys(h), ['traceparent', 'x-deadline-ms', 'content-type', 'content-length']);
  assert.equal(h['x-deadline-ms'], '20');
  assert.deepEqual(buildNormRequest('{}', {}, defaults, 20, dflt).headers,
    { 'content-type': 'application/json', 'content-length': '2', 'x-deadline-ms': '20' });
});

test('keep-alive: sequential calls share one connection', async (t) => {
  const { fake, client } = await setup(t);
  await client.ready(); // GET /flags opens the connection
  for (let i = 0; i < 20; i++) assert.equal((await client.norm(ORDER, { key: `k${i}` })).path, 'normd');
  assert.equal(fake.connections, 1);
});

test('rollout from GET /flags is sticky and splits 1000 keys near 25 %', async (t) => {
  const { fake, client, rec } = await setup(t);
  fake.setFlag({ enabled: true, rollout_percent: 25 });
  await client.ready();
  const first = [];
  for (let i = 0; i < 1000; i++) first.push((await client.norm('{}', { key: `key-${i}` })).path);
  const routed = first.filter((p) => p === 'normd').length;
  assert.ok(routed >= 200 && routed <= 300, `routed ${routed}`);
  assert.equal(fake.normRequests, routed);
  for (let i = 0; i < 1000; i++) {
    assert.equal((await client.norm('{}', { key: `key-${i}` })).path, first[i], `key-${i} changed path`);
  }
  const s = client.stats();
  assert.equal(s.normd_ok, 2 * routed);
  assert.equal(s.fallback_by_reason.rollout, 2 * (1000 - routed));
  assert.ok(rec.calls.every((c) => c.reason === 'rollout'));
});

test('flag disabled: in-app without asking normd', async (t) => {
  const { fake, client } = await setup(t);
  fake.setFlag({ enabled: false, rollout_percent: 100 });
  await client.ready();
  const r = await client.norm(ORDER, { key: 'a' });
  assert.deepEqual(r, { path: 'inapp', reason: 'disabled', data: 'inapp:disabled' });
  assert.equal(fake.normRequests, 0);
  assert.equal(client.stats().fallback_by_reason.disabled, 1);
});

test('rolloutPercent override: no GET /flags at all', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 100 });
  assert.equal((await client.norm(ORDER, { key: 'a' })).path, 'normd');
  assert.equal(fake.flagsRequests, 0);
  assert.equal(client.stats().rollout_override, 100);
});

const FALLBACKS = [
  { name: '429 overloaded', status: 429, code: 'overloaded', headers: { 'retry-after': '1' }, reason: 'overloaded' },
  { name: '503 not_ready', status: 503, code: 'not_ready', headers: { 'retry-after': '1' }, reason: 'unavailable' },
  { name: '503 draining', status: 503, code: 'draining', headers: { 'retry-after': '1' }, reason: 'unavailable' },
  { name: '503 memory_pressure', status: 503, code: 'memory_pressure', headers: { 'retry-after': '2' }, reason: 'unavailable' },
  { name: '503 disabled', status: 503, code: 'disabled', headers: { 'retry-after': '5' }, reason: 'disabled' },
  { name: '504 deadline_exceeded', status: 504, code: 'deadline_exceeded', headers: {}, reason: 'deadline' },
  { name: '500 internal', status: 500, code: 'internal', headers: {}, reason: 'server_error' },
  // 4xx outside the contract (something in front of normd, or a normd bug) say
  // nothing about the caller's data: normd's side, like a 5xx.
  { name: '401 (not in the contract)', status: 401, code: 'unauthorized', headers: {}, reason: 'server_error' },
  { name: '403 (not in the contract)', status: 403, code: 'forbidden', headers: {}, reason: 'server_error' },
  { name: '409 (not in the contract)', status: 409, code: 'conflict', headers: {}, reason: 'server_error' },
];

for (const f of FALLBACKS) {
  test(`falls back on ${f.name} → ${f.reason}`, async (t) => {
    const { fake, client, rec } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 100 } });
    fake.normHandler = (req, res) => problem(res, f.status, f.code, {}, f.headers);
    const r = await client.norm(ORDER, { key: 'k' });
    assert.equal(r.path, 'inapp');
    assert.equal(r.reason, f.reason);
    assert.equal(r.data, `inapp:${f.reason}`);
    assert.equal(fake.normRequests, 1);
    assert.equal(rec.calls.length, 1);
    assert.equal(rec.calls[0].key, 'k');
    assert.ok(rec.calls[0].error instanceof NormdError);
    assert.equal(rec.calls[0].error.status, f.status);
    assert.equal(rec.calls[0].error.code, f.code);
    const s = client.stats();
    assert.equal(s.fallback_by_reason[f.reason], 1);
    assert.equal(s.fallback_total, 1);
    assert.equal(s.errors, 0);
  });
}

test('a 200 without X-Normd-Digest breaks the contract → server_error, a breaker failure', async (t) => {
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 1 } });
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 2, 'x-normd-encoding': 'gzip' });
    res.end('xx');
  };
  const r = await client.norm(ORDER, { key: 'k' });
  assert.deepEqual(r, { path: 'inapp', reason: 'server_error', data: 'inapp:server_error' });
  assert.equal(rec.calls[0].error.code, 'NORMD_NO_DIGEST');
  const s = client.stats();
  assert.equal(s.normd_ok, 0);
  assert.equal(s.breaker.state, 'open');
});

test('connection reset mid-request → connection', async (t) => {
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100 });
  fake.normHandler = (req) => req.socket.destroy();
  const r = await client.norm(ORDER, { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(rec.calls[0].error.code, 'ECONNRESET');
});

test('no socket file (ENOENT) → connection', async (t) => {
  const rec = recorder();
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'normd-none-'));
  const client = new NormdClient({ socketPath: path.join(dir, 'missing.sock'), rolloutPercent: 100, fallback: rec.fn, ...SLOW_OK });
  t.after(() => { client.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const r = await client.norm(ORDER, { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(rec.calls[0].error.code, 'ENOENT');
});

test('a path nobody listens on (ECONNREFUSED) → connection', async (t) => {
  const fake = await startFakeNormd();
  const rec = recorder();
  // A file where the socket should be, nobody accepting: what a crashed
  // listener leaves behind. Linux answers connect() with ECONNREFUSED.
  const stalePath = path.join(fake.dir, 'stale.sock');
  fs.writeFileSync(stalePath, '');
  const client = new NormdClient({ socketPath: stalePath, rolloutPercent: 100, fallback: rec.fn, ...SLOW_OK });
  t.after(async () => { client.close(); await fake.close(); });
  const r = await client.norm(ORDER, { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(rec.calls[0].error.code, 'ECONNREFUSED');
});

test('422 schema_violation is surfaced, never a fallback', async (t) => {
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100 });
  const errors = [{ instance_path: '/order/items/0/qty', schema_path: '/$defs/line_item/properties/qty/minimum', message: '0 is less than 1' }];
  fake.normHandler = (req, res) => problem(res, 422, 'schema_violation', { errors }, { 'x-request-id': 'rid-1' });
  await assert.rejects(client.norm(ORDER, { key: 'k' }), (err) => {
    assert.ok(err instanceof NormdError);
    assert.equal(err.status, 422);
    assert.equal(err.code, 'schema_violation');
    assert.deepEqual(err.errors, errors);
    assert.equal(err.requestId, 'rid-1');
    return true;
  });
  assert.equal(rec.calls.length, 0);
  const s = client.stats();
  assert.equal(s.errors, 1);
  assert.deepEqual(s.errors_by_code, { schema_violation: 1 });
  assert.equal(s.fallback_total, 0);
  assert.equal(s.breaker.consecutive_failures, 0);
});

for (const [status, code] of [[400, 'invalid_json'], [400, 'duplicate_key'], [413, 'payload_too_large'], [415, 'unsupported_media_type'], [422, 'number_precision']]) {
  test(`${status} ${code} is surfaced with its code`, async (t) => {
    const { fake, client, rec } = await setup(t, { rolloutPercent: 100 });
    fake.normHandler = (req, res) => problem(res, status, code);
    await assert.rejects(client.norm(ORDER, { key: 'k' }), { name: 'NormdError', status, code });
    assert.equal(rec.calls.length, 0);
  });
}

test('local timeout: the request is aborted and the call falls back', async (t) => {
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100, timeoutSlackMs: 5 });
  fake.normHandler = () => { /* hang */ };
  // On a loaded machine a tiny budget can run out before the request is even
  // written; grow it (bounded) until normd has seen one, so the abort below
  // is checked from normd's side too.
  for (const deadlineMs of [30, 100, 300, 1000, 3000]) {
    const r = await client.norm(ORDER, { key: 'k', deadlineMs });
    assert.equal(r.reason, 'timeout');
    assert.equal(rec.calls.at(-1).error.code, 'NORMD_LOCAL_TIMEOUT');
    if (fake.normRequests > 0) {
      assert.equal(fake.last.headers['x-deadline-ms'], String(deadlineMs));
      break;
    }
  }
  assert.ok(fake.normRequests > 0, 'normd saw at least one of the calls');
  // normd sees the connection go away instead of holding it forever.
  await waitFor(() => fake.abandoned === fake.normRequests, { what: 'server to see the abort' });
  assert.equal(client.stats().fallback_by_reason.timeout, rec.calls.length);
  // and the client keeps working afterwards
  fake.normHandler = ok;
  assert.equal((await client.norm(ORDER, { key: 'k' })).path, 'normd');
});

test('timeout while the body is streaming still counts as timeout', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 100 });
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '100' });
    res.write(Buffer.alloc(10)); // and never the rest
  };
  const r = await client.norm(ORDER, { key: 'k', deadlineMs: 20 });
  assert.equal(r.reason, 'timeout');
});

test('breaker: open after N failures, half-open probe after cooldown, closes on success', async (t) => {
  const clock = { t: 0 };
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 3, cooldownMs: 5000 }, now: () => clock.t });
  fake.normHandler = (req, res) => problem(res, 503, 'not_ready', {}, { 'retry-after': '1' });
  for (let i = 0; i < 3; i++) assert.equal((await client.norm(ORDER, { key: 'k' })).reason, 'unavailable');
  assert.equal(client.stats().breaker.state, 'open');

  // Open: short-circuits without touching normd.
  for (let i = 0; i < 5; i++) assert.equal((await client.norm(ORDER, { key: 'k' })).reason, 'breaker_open');
  assert.equal(fake.normRequests, 3);

  clock.t += 5000;
  assert.equal(client.stats().breaker.state, 'half_open');
  // The probe hangs until we release it, so we can look at half-open.
  let release;
  fake.normHandler = (req, res, body) => { release = () => ok(req, res, body); };
  const probe = client.norm(ORDER, { key: 'k', deadlineMs: 60000 });
  await waitFor(() => fake.normRequests === 4, { what: 'the probe to reach normd' });
  assert.equal((await client.norm(ORDER, { key: 'k' })).reason, 'breaker_open', 'one probe at a time');
  assert.equal(fake.normRequests, 4);
  release();
  assert.equal((await probe).path, 'normd');
  assert.equal(client.stats().breaker.state, 'closed');

  fake.normHandler = ok;
  assert.equal((await client.norm(ORDER, { key: 'k' })).path, 'normd');
  const s = client.stats();
  assert.equal(s.fallback_by_reason.breaker_open, 6);
  assert.equal(s.breaker.opened_total, 1);
  assert.equal(rec.calls.length, 9);
});

test('breaker: a failed probe re-opens it', async (t) => {
  const clock = { t: 0 };
  const { fake, client } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 2, cooldownMs: 100 }, now: () => clock.t });
  fake.normHandler = (req, res) => problem(res, 504, 'deadline_exceeded');
  await client.norm(ORDER, { key: 'k' });
  await client.norm(ORDER, { key: 'k' });
  clock.t += 100;
  assert.equal((await client.norm(ORDER, { key: 'k' })).reason, 'deadline', 'the probe went through and failed');
  assert.equal(client.stats().breaker.state, 'open');
  assert.equal((await client.norm(ORDER, { key: 'k' })).reason, 'breaker_open');
  assert.equal(client.stats().breaker.opened_total, 2);
});

test('breaker: contract errors and 503 disabled do not count as failures', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 2 } });
  const answers = [
    (req, res) => problem(res, 429, 'overloaded', {}, { 'retry-after': '1' }),
    (req, res) => problem(res, 422, 'schema_violation', { errors: [] }),
    (req, res) => problem(res, 429, 'overloaded', {}, { 'retry-after': '1' }),
    (req, res) => problem(res, 503, 'disabled'),
    (req, res) => problem(res, 429, 'overloaded', {}, { 'retry-after': '1' }),
  ];
  for (const a of answers) {
    fake.normHandler = a;
    await client.norm(ORDER, { key: 'k' }).catch((e) => assert.equal(e.code, 'schema_violation'));
  }
  assert.equal(client.stats().breaker.state, 'closed');
  assert.equal(fake.normRequests, 5);
});

test('breaker: a bad argument never wedges the half-open probe slot', async (t) => {
  const clock = { t: 0 };
  const { fake, client } = await setup(t, { rolloutPercent: 100, breaker: { failureThreshold: 1, cooldownMs: 10 }, now: () => clock.t });
  fake.normHandler = (req, res) => problem(res, 503, 'not_ready');
  await client.norm(ORDER, { key: 'k' });
  clock.t += 10;
  const circular = {}; circular.self = circular;
  await assert.rejects(client.norm(circular, { key: 'k' }), TypeError);
  await assert.rejects(client.norm(ORDER, { key: 'k', deadlineMs: -1 }), TypeError);
  // A header http.request would refuse is the caller's bug too.
  await assert.rejects(client.norm(ORDER, { key: 'k', requestId: 'a\r\nb' }), TypeError);
  await assert.rejects(client.norm(ORDER, { key: 'k', headers: { 'bad name': 'x' } }), TypeError);
  fake.normHandler = ok;
  assert.equal((await client.norm(ORDER, { key: 'k' })).path, 'normd');
});

test('TCP fallback transport when the socket is missing', async (t) => {
  const fake = await startFakeNormd({ tcp: true });
  const rec = recorder();
  const client = new NormdClient({ socketPath: path.join(fake.dir, 'gone.sock'), port: fake.port, rolloutPercent: 100, fallback: rec.fn, ...SLOW_OK });
  t.after(async () => { client.close(); await fake.close(); });
  const r = await client.norm(ORDER, { key: 'k' });
  assert.equal(r.path, 'normd');
  assert.equal(r.transport, 'tcp');
  const s = client.stats();
  assert.equal(s.transport_failovers, 1);
  assert.deepEqual(s.by_transport, { unix: 0, tcp: 1 });
});

test('TCP-only client', async (t) => {
  const fake = await startFakeNormd({ tcp: true });
  const client = new NormdClient({ port: fake.port, flagsRefreshMs: 0, ...SLOW_OK });
  t.after(async () => { client.close(); await fake.close(); });
  assert.equal(await client.ready(), true);
  assert.equal((await client.norm(ORDER, { key: 'k' })).transport, 'tcp');
});

test('without a fallback function a fallback becomes NormdUnavailableError', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 100, fallback: undefined });
  fake.normHandler = (req, res) => problem(res, 429, 'overloaded', {}, { 'retry-after': '1' });
  await assert.rejects(client.norm(ORDER, { key: 'k' }), (err) => err instanceof NormdUnavailableError && err.reason === 'overloaded');
  // a per-call fallback wins
  const r = await client.norm(ORDER, { key: 'k', fallback: (b, ctx) => `call:${ctx.reason}` });
  assert.equal(r.data, 'call:overloaded');
});

test('the fallback receives the body as given', async (t) => {
  const { fake, client } = await setup(t, { rolloutPercent: 0 });
  let seen;
  const r = await client.norm(ORDER, { key: 'k', fallback: async (b) => { seen = b; return 7; } });
  assert.equal(seen, ORDER);
  assert.deepEqual(r, { path: 'inapp', reason: 'rollout', data: 7 });
  assert.equal(fake.normRequests, 0);
});

test('resetStats zeroes the counters', async (t) => {
  const { client } = await setup(t, { rolloutPercent: 0 });
  await client.norm('{}', { key: 'k' });
  assert.equal(client.stats().calls, 1);
  client.resetStats();
  const s = client.stats();
  assert.equal(s.calls, 0);
  assert.equal(s.fallback_by_reason.rollout, 0);
});

test('close(): calls still out, queued behind maxSockets too, fall back at once and send nothing more', async (t) => {
  const { fake, client, rec } = await setup(t, { rolloutPercent: 100, maxSockets: 2 });
  fake.normHandler = () => { /* hold every answer */ };
  const calls = Array.from({ length: 6 }, (_, i) => client.norm(ORDER, { key: `k${i}` }));
  await waitFor(() => fake.normRequests === 2, { what: 'the first two calls to reach normd' });
  client.close();
  const results = await Promise.all(calls);
  assert.deepEqual(results.map((r) => r.reason), Array(6).fill('connection'));
  assert.ok(rec.calls.every((c) => c.error.code === 'NORMD_CLIENT_CLOSED'), JSON.stringify(rec.calls.map((c) => c.error.code)));
  assert.equal(fake.normRequests, 2, 'nothing queued went out after close()');
});

test('close(): later calls reject, and a process with a used client exits by itself', async (t) => {
  const { client } = await setup(t, { rolloutPercent: 100 });
  await client.norm(ORDER, { key: 'k' });
  client.close();
  await assert.rejects(client.norm(ORDER, { key: 'k' }), NormdClosedError);

  // A child that uses a client with a live refresh timer and a keep-alive
  // socket, then closes it: it must exit on its own.
  const fake = await startFakeNormd();
  t.after(() => fake.close());
  const { spawn } = require('node:child_process');
  const script = `
    const { NormdClient } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const c = new NormdClient({ socketPath: ${JSON.stringify(fake.socketPath)}, flagsRefreshMs: 50, deadlineMs: 30000, flagsTimeoutMs: 30000 });
    c.ready().then(() => c.norm('{"a":1}', { key: 'k' })).then((r) => { console.log(r.path); c.close(); });
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const killer = setTimeout(() => child.kill('SIGKILL'), 20000);
  const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(sig || c)));
  clearTimeout(killer);
  assert.equal(code, 0, 'child exited by itself');
  assert.equal(out.trim(), 'normd');
});
