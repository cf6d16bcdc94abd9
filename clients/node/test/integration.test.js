'use strict';
/**
 * Against a real normd binary: runs only when NORMD_BIN names an executable,
 * e.g. NORMD_BIN=../../target/release/normd npm test. Skips otherwise.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { NormdClient, NormdError } = require('..');
const { waitFor, canonical } = require('./support/fake-normd');

const BIN = process.env.NORMD_BIN ? path.resolve(process.env.NORMD_BIN) : '';
const SCHEMAS = path.resolve(process.env.NORMD_SCHEMAS || path.join(__dirname, '..', '..', '..', 'schemas'));
const FIXTURES = ['order-0000.json', 'order-0001.json'].map((f) => path.join(__dirname, 'fixtures', f));

function skipReason() {
  if (!BIN) return 'NORMD_BIN is not set';
  try {
    fs.accessSync(BIN, fs.constants.X_OK);
  } catch {
    return `NORMD_BIN=${BIN} is not an executable file`;
  }
  if (!fs.statSync(BIN).isFile()) return `NORMD_BIN=${BIN} is not a file`;
  return null;
}

/** GET over the Unix socket; resolves {status, body} or rejects, within `timeoutMs`. */
function get(socketPath, urlPath, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}

/** Replace the flags file the way a ConfigMap update does: write aside, rename over. */
function writeFlags(file, doc) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(doc));
  fs.renameSync(tmp, file);
}

test('normd integration (NORMD_BIN)', async (t) => {
  const why = skipReason();
  if (why) {
    t.skip(why);
    return;
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'normd-it-'));
  const sock = path.join(dir, 'normd.sock');
  const flagsFile = path.join(dir, 'flags.json');
  writeFlags(flagsFile, { norm: { enabled: true, rollout_percent: 100 } });

  const args = ['serve', '--socket', sock, '--listen', '', '--schemas', SCHEMAS, '--flags', flagsFile];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  let output = '';
  const keep = (d) => { output = (output + d).slice(-16384); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  const diag = () => `normd ${args.join(' ')}\n--- last output ---\n${output}`;

  let client = null;
  t.after(async () => {
    if (client) client.close();
    if (!exited) {
      child.kill('SIGKILL');
      await exit;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // Ready: poll GET /readyz over the socket every 50 ms for at most 10 s.
  await waitFor(async () => {
    if (exited) throw new Error(`normd exited early (${JSON.stringify(exited)})\n${diag()}`);
    try {
      return (await get(sock, '/readyz', 1000)).status === 200;
    } catch {
      return false;
    }
  }, { maxMs: 10000, everyMs: 50, what: `normd /readyz 200\n${diag()}` });

  const inapp = [];
  client = new NormdClient({
    socketPath: sock,
    flagsRefreshMs: 100,
    // A debug build is slow; this test checks behaviour, not latency.
    deadlineMs: 5000,
    fallback: (body, ctx) => { inapp.push(ctx); return null; },
  });
  assert.equal(await client.ready(), true, `GET /flags failed: ${client.stats().flags.last_error}`);
  const f = client.stats().flags;
  assert.equal(f.enabled, true);
  assert.equal(f.rollout_percent, 100);

  await t.test('200: canonical JSON, gzipped, with matching headers', async () => {
    for (const [i, file] of FIXTURES.entries()) {
      const raw = fs.readFileSync(file);
      const r = await client.norm(raw, { key: `it-${i}` });
      assert.equal(r.path, 'normd', `fell back: ${JSON.stringify(r.reason)} ${inapp.at(-1)?.error?.message}\n${diag()}`);
      assert.equal(r.encoding, 'gzip');
      const canon = zlib.gunzipSync(r.data);
      const text = canon.toString('utf8');
      JSON.parse(text); // valid JSON
      assert.equal(text, canonical(JSON.parse(raw.toString('utf8'))), 'RFC 8785 form of the input');
      assert.equal(r.inputBytes, raw.length);
      assert.equal(r.canonicalBytes, canon.length);
      assert.equal(r.outputBytes, r.data.length);
      assert.equal(r.digest, `sha-256=:${crypto.createHash('sha256').update(canon).digest('base64')}:`);
      assert.ok(r.requestId, 'X-Request-Id');
    }
  });

  await t.test('contract errors are surfaced, not fallen back', async () => {
    const before = inapp.length;
    await assert.rejects(client.norm('{"a":', { key: 'bad' }), (e) => e instanceof NormdError && e.status === 400 && e.code === 'invalid_json');
    await assert.rejects(client.norm('{"a":1,"a":2}', { key: 'dup' }), (e) => e instanceof NormdError && e.status === 400 && e.code === 'duplicate_key');
    assert.equal(inapp.length, before);
  });

  await t.test('flag turned off in the flags file → the client falls back', async () => {
    writeFlags(flagsFile, { norm: { enabled: false, rollout_percent: 100 } });
    const raw = fs.readFileSync(FIXTURES[0]);
    const r = await waitFor(async () => {
      const res = await client.norm(raw, { key: 'it-0' });
      return res.path === 'inapp' && res.reason === 'disabled' ? res : null;
    }, { maxMs: 15000, everyMs: 50, what: `fallback with reason disabled\n${diag()}` });
    assert.equal(r.reason, 'disabled');
  });

  await t.test('SIGTERM: normd exits 0 and removes its socket', async () => {
    client.close();
    client = null;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 30000);
    const { code, signal } = await exit;
    clearTimeout(killer);
    assert.equal(signal, null, `normd did not exit within 30 s of SIGTERM\n${diag()}`);
    assert.equal(code, 0, diag());
    assert.equal(fs.existsSync(sock), false, 'socket file removed on shutdown');
  });
});
