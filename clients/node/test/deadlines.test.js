'use strict';
/**
 * The shared deadline timer: the DeadlineQueue on its own (with an injected
 * clock and manual firing, so nothing depends on timing), then through the
 * client against a fake normd that holds its answers.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { NormdClient } = require('..');
const { DeadlineQueue, MAX_TIMER_MS } = require('../lib/deadlines');
const { startFakeNormd, waitFor, ok } = require('./support/fake-normd');

const ORDER = fs.readFileSync(path.join(__dirname, 'fixtures', 'order-0000.json'));

/** A queue entry that records when (on the queue's clock) it expired. */
function entry(deadlineAt, fired, clock) {
  return {
    deadlineAt,
    deadlineIndex: -1,
    firedAt: /** @type {number|null} */ (null),
    onDeadline() {
      this.firedAt = clock();
      fired.push(this.deadlineAt);
    },
  };
}

test('queue: expires exactly the entries that are due, earliest first, and re-arms for the next', () => {
  const clock = { t: 0 };
  const now = () => clock.t;
  const q = new DeadlineQueue(now);
  const fired = [];
  for (const d of [50, 10, 30, 20, 40]) q.add(entry(d, fired, now));
  assert.equal(q.size, 5);
  assert.equal(q._timerAt, 10, 'armed for the earliest deadline');

  clock.t = 25;
  q._fire();
  assert.deepEqual(fired, [10, 20]);
  assert.equal(q.size, 3);
  assert.equal(q._timerAt, 30, 're-armed for the next pending deadline');

  clock.t = 29.999; // a timer that fires early expires nothing and re-arms
  q._fire();
  assert.deepEqual(fired, [10, 20]);
  assert.equal(q._timerAt, 30);

  clock.t = 1000;
  q._fire();
  assert.deepEqual(fired, [10, 20, 30, 40, 50]);
  assert.equal(q.size, 0);
  assert.equal(q._timer, null, 'nothing pending: no timer');
});

test('queue: removed entries never fire, whatever their slot in the heap', () => {
  const clock = { t: 0 };
  const now = () => clock.t;
  const q = new DeadlineQueue(now);
  const fired = [];
  // Deterministic pseudo-random deadlines (LCG), with duplicates.
  let seed = 12345;
  const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; };
  const entries = [];
  for (let i = 0; i < 300; i++) {
    const e = entry(rnd() % 1000, fired, now);
    entries.push(e);
    q.add(e);
  }
  q.add(entries[0]); // adding a queued entry again is a no-op
  const kept = [];
  for (let i = 0; i < entries.length; i++) {
    if (i === 0 || rnd() % 3 === 0) q.remove(entries[i]);
    else kept.push(entries[i].deadlineAt);
  }
  q.remove(entries[0]); // removing twice is a no-op
  assert.equal(q.size, kept.length);
  kept.sort((a, b) => a - b);
  for (clock.t = 0; clock.t <= 1000; clock.t += 37) q._fire();
  assert.deepEqual(fired, kept);
  for (const e of entries) assert.equal(e.deadlineIndex, -1);
});

test('queue: answers leave the timer alone; only an earlier deadline re-arms it; the timer is unref\'d', () => {
  const clock = { t: 0 };
  const now = () => clock.t;
  const q = new DeadlineQueue(now);
  const fired = [];
  const a = entry(100000, fired, now);
  q.add(a);
  const armed = q._timer;
  assert.ok(armed);
  assert.equal(armed.hasRef(), false, 'an idle client is not kept alive by its deadline timer');
  q.add(entry(200000, fired, now));
  assert.equal(q._timer, armed, 'a later deadline does not re-arm');
  q.remove(a);
  assert.equal(q._timer, armed, 'an answered call does not touch the timer');
  q.add(entry(50000, fired, now));
  assert.notEqual(q._timer, armed, 'an earlier deadline re-arms');
  assert.equal(q._timerAt, 50000);
  assert.equal(q._timer.hasRef(), false);
  clock.t = Infinity; // let the unref'd real timer find everything expired, whenever it runs
  q._fire();
  assert.equal(q.size, 0);
});

test('queue: a deadline past setTimeout\'s range is armed in steps, not fired at once', () => {
  const clock = { t: 0 };
  const q = new DeadlineQueue(() => clock.t);
  const fired = [];
  q.add(entry(2 ** 40, fired, () => clock.t));
  const armed = q._timer;
  assert.ok(armed);
  // Node fires a timer over 2^31-1 ms after 1 ms (with a warning), which would
  // spin: the armed delay must be within range.
  assert.ok(armed._idleTimeout <= MAX_TIMER_MS && armed._idleTimeout > 2 ** 30, String(armed._idleTimeout));
  clock.t = MAX_TIMER_MS; // that step's firing: nothing is due, the rest is re-armed
  q._fire();
  assert.deepEqual(fired, []);
  assert.equal(q.size, 1);
  assert.ok(q._timer);
  clock.t = 2 ** 40;
  q._fire();
  assert.deepEqual(fired, [2 ** 40]);
  assert.equal(q.size, 0);
});

test('queue, real timer: every entry fires, in deadline order, never before its deadline', async () => {
  const q = new DeadlineQueue();
  const t0 = performance.now();
  const fired = [];
  const entries = [];
  const all = [];
  for (const d of [12, 3, 9, 1, 15, 6, 6, 20]) {
    const e = entry(t0 + d, fired, () => performance.now());
    let done;
    all.push(new Promise((r) => { done = r; }));
    const onDeadline = e.onDeadline;
    e.onDeadline = function () { onDeadline.call(this); done(); };
    entries.push(e);
    q.add(e);
  }
  // The timer is unref'd: something must keep this test's event loop alive.
  const keepAlive = setInterval(() => {}, 1000);
  try {
    await Promise.all(all);
  } finally {
    clearInterval(keepAlive);
  }
  assert.deepEqual(fired, [1, 3, 6, 6, 9, 12, 15, 20].map((d) => t0 + d));
  for (const e of entries) assert.ok(e.firedAt >= e.deadlineAt, `fired at ${e.firedAt}, deadline ${e.deadlineAt}`);
  assert.equal(q.size, 0);
});

/**
 * A fake normd that holds every POST /norm until the test releases it, and a
 * client on it, both torn down after the test.
 * @param {import('node:test').TestContext} t
 */
async function holdingSetup(t, clientOpts = {}) {
  const fake = await startFakeNormd();
  /** @type {Array<{req: any, res: any, body: Buffer, deadline: string}>} */
  const held = [];
  fake.normHandler = (req, res, body) => { held.push({ req, res, body, deadline: req.headers['x-deadline-ms'] }); };
  const fallbacks = [];
  const client = new NormdClient({
    socketPath: fake.socketPath,
    rolloutPercent: 100,
    timeoutSlackMs: 5,
    breaker: { failureThreshold: 1000 },
    fallback: (body, ctx) => { fallbacks.push(ctx); return `inapp:${ctx.reason}`; },
    ...clientOpts,
  });
  t.after(async () => {
    client.close();
    await fake.close();
  });
  return { fake, client, held, fallbacks };
}

test('a call that exceeds its deadline times out at deadline + slack and falls back', async (t) => {
  const { client, held, fallbacks } = await holdingSetup(t);
  const t0 = performance.now();
  const r = await client.norm(ORDER, { key: 'k', deadlineMs: 40 });
  const elapsed = performance.now() - t0;
  assert.deepEqual(r, { path: 'inapp', reason: 'timeout', data: 'inapp:timeout' });
  assert.ok(elapsed >= 45, `local timeout fired after ${elapsed} ms, before deadline + slack (45 ms)`);
  assert.equal(fallbacks.length, 1);
  assert.equal(fallbacks[0].error.code, 'NORMD_LOCAL_TIMEOUT');
  assert.match(fallbacks[0].error.message, /within 45 ms/);
  const s = client.stats();
  assert.equal(s.fallback_by_reason.timeout, 1);
  assert.equal(s.breaker.consecutive_failures, 1);
  assert.equal(client._deadlines.size, 0, 'the expired call left the queue');
  // A held request, if it got there, sees its connection closed.
  for (const h of held) await waitFor(() => h.req.socket.destroyed, { what: 'normd to see the abort' });
});

test('concurrent calls with different deadlines each time out at their own deadline; later ones still complete', async (t) => {
  const { fake, client, held } = await holdingSetup(t);
  const LONG = 60000; // released by the test long before this
  // Interleaved, and the shortest added last, so the one timer must be
  // re-armed earlier as calls arrive and re-armed later as they expire.
  const plan = [LONG, 120, 40, LONG, 100, 80, LONG, 60, 20];
  const t0 = performance.now();
  const settledOrder = [];
  const calls = plan.map((deadlineMs, i) => client.norm(ORDER, { key: `k${i}`, deadlineMs }).then((r) => {
    settledOrder.push(deadlineMs);
    return { r, elapsed: performance.now() - t0, deadlineMs };
  }));

  const shorts = await Promise.all(calls.filter((_, i) => plan[i] !== LONG));
  for (const { r, elapsed, deadlineMs } of shorts) {
    assert.equal(r.reason, 'timeout', `deadline ${deadlineMs}`);
    assert.ok(elapsed >= deadlineMs + 5, `deadline ${deadlineMs} + 5 ms slack, expired after ${elapsed} ms`);
  }
  assert.deepEqual(settledOrder, [20, 40, 60, 80, 100, 120], 'expired in deadline order');
  assert.equal(client.stats().fallback_by_reason.timeout, 6);

  // The long calls were not touched by the timer firing for the short ones.
  assert.equal(client._deadlines.size, 3);
  await waitFor(() => held.filter((h) => h.deadline === String(LONG)).length === 3, { what: 'the long calls to reach normd' });
  for (const h of held) if (h.deadline === String(LONG)) ok(h.req, h.res, h.body);
  const longs = await Promise.all(calls.filter((_, i) => plan[i] === LONG));
  for (const { r } of longs) assert.equal(r.path, 'normd');
  assert.equal(client.stats().normd_ok, 3);
  assert.equal(client._deadlines.size, 0);
  assert.equal(fake.normRequests, held.length);
});

test('an answered call leaves nothing queued, and the timer does not keep the process alive', async (t) => {
  const fake = await startFakeNormd();
  t.after(() => fake.close());
  const client = new NormdClient({ socketPath: fake.socketPath, rolloutPercent: 100, deadlineMs: 600000 });
  t.after(() => client.close());
  assert.equal((await client.norm(ORDER, { key: 'k' })).path, 'normd');
  assert.equal(client._deadlines.size, 0);
  const timer = client._deadlines._timer;
  assert.ok(timer === null || !timer.hasRef(), 'the deadline timer is unref\'d');

  // End to end: a child answered by normd with a 10-minute deadline armed,
  // not closing its client, must still exit by itself.
  const { spawn } = require('node:child_process');
  const script = `
    const { NormdClient } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const c = new NormdClient({ socketPath: ${JSON.stringify(fake.socketPath)}, rolloutPercent: 100, deadlineMs: 600000 });
    c.norm('{"a":1}', { key: 'k' }).then((r) => { console.log(r.path, c._deadlines._timer !== null); });
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30000);
  const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(sig || c)));
  clearTimeout(killer);
  assert.equal(code, 0, 'child exited by itself');
  assert.equal(out.trim(), 'normd true', 'it exited with the deadline timer still armed');
});

test('a header http.request would refuse: a TypeError before anything is sent or queued', async (t) => {
  const { client, held, fallbacks } = await holdingSetup(t);
  await assert.rejects(
    client.norm(ORDER, { key: 'k', deadlineMs: 60000, headers: { traceparent: 'bad\nvalue' } }),
    (err) => err instanceof TypeError && /traceparent/.test(err.message),
  );
  assert.equal(fallbacks.length, 0, "the caller's bug is not a normd failure");
  assert.equal(client.stats().breaker.state, 'closed');
  assert.equal(held.length, 0);
  assert.equal(client._deadlines.size, 0, 'no deadline queued for a request that was never made');
});

test('a keep-alive socket normd had closed is retried once on a fresh one, inside the same deadline', async (t) => {
  const fake = await startFakeNormd();
  // Serve one request per connection; a request on a reused connection finds
  // it closed without an answer, like a socket normd's idle timeout closed.
  const served = new WeakSet();
  fake.normHandler = (req, res, body) => {
    if (served.has(req.socket)) { req.socket.destroy(); return; }
    served.add(req.socket);
    ok(req, res, body);
  };
  const client = new NormdClient({ socketPath: fake.socketPath, rolloutPercent: 100, deadlineMs: 30000 });
  t.after(async () => { client.close(); await fake.close(); });
  assert.equal((await client.norm(ORDER, { key: 'a' })).path, 'normd');
  assert.equal((await client.norm(ORDER, { key: 'b' })).path, 'normd');
  const s = client.stats();
  assert.equal(s.retries, 1);
  assert.equal(s.normd_ok, 2);
  assert.equal(fake.connections, 2);
  assert.equal(client._deadlines.size, 0);
});
