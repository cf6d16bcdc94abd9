'use strict';
/**
 * Reading normd's answer: into one buffer sized from Content-Length when the
 * response has one, else by collecting chunks; cut and oversized answers
 * become `connection` fallbacks. The fake normd writes the bodies by hand,
 * in pieces, and holds or cuts them where a test needs it.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { NormdClient } = require('..');
const { startFakeNormd, ok } = require('./support/fake-normd');

/** normd sends a digest with every 200 (the client refuses one without); its value is not checked here. */
const DIGEST = 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:';

/** Budgets far beyond what a healthy run needs: no test here is about time. */
const SLOW_OK = { deadlineMs: 30000, flagsTimeoutMs: 30000 };

/** @param {import('node:test').TestContext} t */
async function setup(t, clientOpts = {}) {
  const fake = await startFakeNormd();
  const fallbacks = [];
  const client = new NormdClient({
    socketPath: fake.socketPath,
    rolloutPercent: 100,
    breaker: { failureThreshold: 1000 },
    fallback: (body, ctx) => { fallbacks.push(ctx); return `inapp:${ctx.reason}`; },
    ...SLOW_OK,
    ...clientOpts,
  });
  t.after(async () => {
    client.close();
    await fake.close();
  });
  return { fake, client, fallbacks };
}

/** Write `parts` one per event-loop turn, so the client sees separate chunks. */
function writeInPieces(res, parts) {
  const next = (i) => {
    if (i === parts.length - 1) { res.end(parts[i]); return; }
    res.write(parts[i], () => setImmediate(() => next(i + 1)));
  };
  next(0);
}

/** Split `buf` into `n` pieces of unequal sizes. */
function pieces(buf, n) {
  const out = [];
  let at = 0;
  for (let i = 1; i <= n; i++) {
    const end = i === n ? buf.length : Math.floor((buf.length * i * i) / (n * n));
    out.push(buf.subarray(at, end));
    at = end;
  }
  return out;
}

/**
 * Count Buffer.concat calls made while normd's answer is being read: the
 * spy goes on once the fake has read the request (its own Buffer.concat) and
 * comes off when the call has settled.
 * @param {import('node:test').TestContext} t
 */
function concatSpy(t) {
  const original = Buffer.concat;
  const spy = {
    calls: 0,
    on() { Buffer.concat = function (...args) { spy.calls++; return original.apply(this, args); }; },
    off() { Buffer.concat = original; },
  };
  t.after(() => spy.off());
  return spy;
}

for (const size of [1, 1500, 200 * 1024]) {
  test(`Content-Length body of ${size} bytes in pieces: returned exactly, without Buffer.concat`, async (t) => {
    const { fake, client } = await setup(t);
    const payload = crypto.randomBytes(size);
    const spy = concatSpy(t);
    fake.normHandler = (req, res) => {
      spy.on();
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': payload.length, 'x-normd-encoding': 'gzip', 'x-normd-digest': DIGEST });
      writeInPieces(res, pieces(payload, Math.min(size, 4)));
    };
    const r = await client.norm('{}', { key: 'k' });
    spy.off();
    assert.equal(r.path, 'normd');
    assert.ok(Buffer.isBuffer(r.data));
    assert.equal(r.data.length, size);
    assert.ok(r.data.equals(payload), 'body differs');
    assert.equal(spy.calls, 0, 'the preallocated buffer is filled in place');
  });
}

test('chunked body (no Content-Length) in pieces: returned exactly, collected and concatenated', async (t) => {
  const { fake, client } = await setup(t);
  const payload = crypto.randomBytes(70 * 1024);
  const spy = concatSpy(t);
  fake.normHandler = (req, res) => {
    spy.on();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-normd-encoding': 'gzip', 'x-normd-digest': DIGEST });
    writeInPieces(res, pieces(payload, 5));
  };
  const r = await client.norm('{}', { key: 'k' });
  spy.off();
  assert.equal(r.path, 'normd');
  assert.ok(r.data.equals(payload), 'body differs');
  assert.equal(spy.calls, 1);
});

test('Content-Length: 0 gives an empty body', async (t) => {
  const { fake, client } = await setup(t);
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 0, 'x-normd-digest': DIGEST });
    res.end();
  };
  const r = await client.norm('{}', { key: 'k' });
  assert.equal(r.path, 'normd');
  assert.equal(r.data.length, 0);
});

test('a body shorter than its Content-Length (connection closed) → connection, never a partial result', async (t) => {
  const { fake, client, fallbacks } = await setup(t);
  let cut = false;
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1000 });
    // Headers and 10 bytes reach the client, then the connection goes.
    res.write(Buffer.alloc(10, 1), () => setImmediate(() => { cut = true; req.socket.destroy(); }));
  };
  const r = await client.norm('{}', { key: 'k' });
  assert.deepEqual(r, { path: 'inapp', reason: 'connection', data: 'inapp:connection' });
  assert.ok(cut);
  assert.equal(fallbacks[0].error.code, 'ECONNRESET');
  const s = client.stats();
  assert.equal(s.fallback_by_reason.connection, 1);
  assert.equal(s.breaker.consecutive_failures, 1);
  assert.equal(s.retries, 0, 'a cut response is not retried: normd did answer');
  // and the next call gets a whole answer on a fresh connection
  fake.normHandler = ok;
  assert.equal((await client.norm('{"a":1}', { key: 'k' })).path, 'normd');
});

test('a chunked body cut mid-way → connection', async (t) => {
  const { fake, client, fallbacks } = await setup(t);
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(Buffer.alloc(10, 1), () => setImmediate(() => req.socket.destroy()));
  };
  const r = await client.norm('{}', { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(fallbacks[0].error.code, 'ECONNRESET');
});

test('a Content-Length above maxResponseBytes fails at the headers, without waiting for (or allocating) the body', async (t) => {
  const { fake, client, fallbacks } = await setup(t, { maxResponseBytes: 1024 });
  fake.normHandler = (req, res) => {
    // Announce 1 GiB, send a little, then hold: a client that waited for the
    // body would end in its 30 s local timeout instead.
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1024 * 1024 * 1024 });
    res.write(Buffer.alloc(10));
  };
  const r = await client.norm('{}', { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(fallbacks[0].error.code, 'NORMD_RESPONSE_TOO_LARGE');
  assert.equal(client._deadlines.size, 0);
  // The connection was dropped, not handed back to the pool with a body in flight.
  fake.normHandler = ok;
  assert.equal((await client.norm('{"a":1}', { key: 'k' })).path, 'normd');
  assert.equal(fake.connections, 2);
});

test('a chunked body growing past maxResponseBytes → connection', async (t) => {
  const { fake, client, fallbacks } = await setup(t, { maxResponseBytes: 1024 });
  fake.normHandler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(Buffer.alloc(600));
    res.write(Buffer.alloc(600)); // and hold
  };
  const r = await client.norm('{}', { key: 'k' });
  assert.equal(r.reason, 'connection');
  assert.equal(fallbacks[0].error.code, 'NORMD_RESPONSE_TOO_LARGE');
});

test('a problem document with Content-Length is read whole (the error path uses the same reader)', async (t) => {
  const { fake, client } = await setup(t);
  const doc = JSON.stringify({ type: 'about:blank', title: 'x', status: 422, detail: 'd'.repeat(5000), code: 'schema_violation', errors: [] });
  fake.normHandler = (req, res) => {
    res.writeHead(422, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(doc) });
    writeInPieces(res, pieces(Buffer.from(doc), 3));
  };
  await assert.rejects(client.norm('{}', { key: 'k' }), (err) => {
    assert.equal(err.code, 'schema_violation');
    assert.equal(err.problem.detail.length, 5000);
    return true;
  });
});
