'use strict';
/**
 * The Node runner of the language-neutral conformance kit (clients/conformance):
 * rollout.json, then one test per scenario file. Real-normd scenarios need
 * NORMD_BIN and are skipped, by name and with the reason, without it.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const zlib = require('node:zlib');
const { spawn } = require('node:child_process');
const { NormdClient, NormdError, fnv1a32, bucketOf } = require('..');
const { waitFor } = require('./support/fake-normd');

const KIT = path.resolve(__dirname, '..', '..', 'conformance');
const SCHEMAS = path.resolve(__dirname, '..', '..', '..', 'schemas');
const BIN = process.env.NORMD_BIN ? path.resolve(process.env.NORMD_BIN) : '';
const START_MS = 10000;

const CLIENT_FIELDS = new Set(['transports', 'deadline_ms', 'timeout_slack_ms', 'failure_threshold', 'cooldown_ms',
  'rollout_percent', 'flags_refresh_ms', 'socket_missing', 'shadow_max_concurrent']);
const CALL_FIELDS = new Set(['key', 'body', 'body_text', 'deadline_ms', 'query', 'inapp']);
const QUERY_FIELDS = new Set(['profile', 'schema', 'encoding', 'level']);
const EXPECT_FIELDS = new Set(['path', 'reason', 'error', 'encoding', 'digest', 'canonical']);
/** Each step kind with the fields it may carry besides `note`. */
const STEP_FIELDS = {
  call: ['expect'], concurrent: ['expect_outcomes'], advance_clock: [], refresh_flags: ['expect_ok'],
  wait_flags: [], write_flags: [], kill_server: [], remove_socket: [], wait_shadow: [],
  expect_stats: [], expect_requests: [],
};

test('rollout.json: FNV-1a 32 and bucket of every key', () => {
  const doc = JSON.parse(fs.readFileSync(path.join(KIT, 'rollout.json'), 'utf8'));
  assert.equal(doc.hash, 'fnv1a32');
  assert.equal(doc.modulo, 100);
  assert.ok(doc.cases.length >= 40, 'the kit has its ~40 keys');
  for (const c of doc.cases) {
    assert.equal(fnv1a32(c.key), c.fnv1a32, `fnv1a32(${JSON.stringify(c.key)})`);
    assert.equal(bucketOf(c.key), c.bucket, `bucketOf(${JSON.stringify(c.key)})`);
  }
});

const files = fs.readdirSync(path.join(KIT, 'scenarios')).filter((f) => f.endsWith('.json')).sort();

test('the kit has scenarios', () => assert.ok(files.length >= 30, `${files.length} scenario files`));

for (const file of files) {
  const scenarioPath = path.join(KIT, 'scenarios', file);
  const sc = JSON.parse(fs.readFileSync(scenarioPath, 'utf8'));
  test(`scenario ${file}: ${sc.name}`, async (t) => {
    if (sc.server === 'normd' && !BIN) {
      t.skip('NORMD_BIN is not set: this real-normd scenario did not run');
      return;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'normd-kit-'));
    /** @type {Server|null} */
    let server = null;
    /** @type {NormdClient|null} */
    let client = null;
    t.after(async () => {
      if (client) client.close();
      if (server) await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    server = sc.server === 'normd' ? await startNormd(dir, sc.normd || {}) : await startFault(dir, scenarioPath, sc);
    const run = new Run(sc, server, dir);
    client = run.client;
    await run.start();
    for (const [i, step] of sc.steps.entries()) {
      try {
        await run.step(step);
      } catch (err) {
        err.message = `step ${i} ${JSON.stringify(step)}: ${err.message}${server.diag()}`;
        throw err;
      }
    }
    const s = client.stats();
    assert.equal(s.calls, s.normd_ok + s.fallback_total + s.errors, 'calls = normd_ok + fallback_total + errors');
  });
}

/** One scenario's client, clock and steps. */
class Run {
  constructor(sc, server, dir) {
    if (!['normd', 'fault'].includes(sc.server) || !sc[sc.server]) throw new Error(`server "${sc.server}" needs its own object`);
    const c = sc.client || {};
    for (const k of Object.keys(c)) if (!CLIENT_FIELDS.has(k)) throw new Error(`unknown client field ${k}`);
    const transports = c.transports || ['unix'];
    this.server = server;
    this.clock = 1e6; // anywhere: it only moves on advance_clock
    this.flagsFromServer = c.rollout_percent === undefined;
    this.client = new NormdClient({
      socketPath: transports.includes('unix') ? (c.socket_missing ? path.join(dir, 'missing.sock') : server.socketPath) : undefined,
      port: transports.includes('tcp') ? server.port : undefined,
      deadlineMs: c.deadline_ms ?? 1000,
      timeoutSlackMs: c.timeout_slack_ms,
      breaker: { failureThreshold: c.failure_threshold ?? 5, cooldownMs: c.cooldown_ms ?? 5000 },
      rolloutPercent: c.rollout_percent,
      flagsRefreshMs: c.flags_refresh_ms ?? 0,
      shadowMaxConcurrent: c.shadow_max_concurrent,
      now: () => this.clock,
    });
  }

  async start() {
    if (this.flagsFromServer) await this.client.ready();
  }

  async step(step) {
    const kind = Object.keys(STEP_FIELDS).find((k) => k in step);
    if (!kind) throw new Error('unknown step');
    for (const k of Object.keys(step)) {
      if (k !== kind && k !== 'note' && !STEP_FIELDS[kind].includes(k)) throw new Error(`unknown field ${k} in a ${kind} step`);
    }
    const v = step[kind];
    switch (kind) {
      case 'call': return this.expectCall(await this.call(v), step.expect || {});
      case 'concurrent': {
        const outcomes = await Promise.all(v.map((c) => this.call(c)));
        const counts = {};
        for (const o of outcomes) counts[outcomeName(o)] = (counts[outcomeName(o)] || 0) + 1;
        assert.deepEqual(counts, step.expect_outcomes, 'outcomes of the concurrent calls');
        return undefined;
      }
      case 'advance_clock': this.clock += v; return undefined;
      case 'refresh_flags': {
        const ok = await this.client.refreshFlags();
        if ('expect_ok' in step) assert.equal(ok, step.expect_ok, `refresh result (last_error: ${this.client.stats().flags.last_error})`);
        return undefined;
      }
      case 'wait_flags':
        await waitFor(async () => {
          await this.client.refreshFlags();
          const f = this.client.stats().flags;
          return Object.entries(v).every(([k, want]) => f[k] === want);
        }, { maxMs: 5000, everyMs: 50, what: `flags ${JSON.stringify(v)}` });
        return undefined;
      case 'write_flags': return this.server.writeFlags(v);
      case 'kill_server': return this.server.kill();
      case 'remove_socket': fs.unlinkSync(this.server.socketPath); return undefined;
      case 'wait_shadow':
        await waitFor(() => {
          const s = this.client.stats().shadow;
          return s.compared + s.normd_failures >= v;
        }, { maxMs: 5000, everyMs: 10, what: `${v} shadow calls answered` });
        return undefined;
      case 'expect_stats': {
        const s = this.client.stats();
        for (const [name, want] of Object.entries(v)) assert.deepEqual(statOf(s, name), want, `stats ${name}`);
        return undefined;
      }
      case 'expect_requests': return this.expectRequests(v);
      default: throw new Error('unreachable');
    }
  }

  /** @returns {Promise<{result?: any, error?: NormdError}>} */
  async call(c) {
    for (const k of Object.keys(c)) if (!CALL_FIELDS.has(k)) throw new Error(`unknown call field ${k}`);
    for (const k of Object.keys(c.query || {})) if (!QUERY_FIELDS.has(k)) throw new Error(`unknown query parameter ${k}`);
    if ((c.body === undefined) === (c.body_text === undefined)) throw new Error('a call has exactly one of body, body_text');
    const body = c.body_text !== undefined ? c.body_text : JSON.stringify(c.body);
    const inapp = Buffer.from(c.inapp ?? '{}', 'utf8');
    try {
      return { result: await this.client.norm(body, { key: c.key, deadlineMs: c.deadline_ms, ...c.query, fallback: () => inapp }) };
    } catch (err) {
      if (err instanceof NormdError) return { error: err };
      throw err;
    }
  }

  expectCall(o, expect) {
    for (const k of Object.keys(expect)) if (!EXPECT_FIELDS.has(k)) throw new Error(`unknown expect field ${k}`);
    const seen = `got ${outcomeName(o)}${o.error ? `: ${o.error.message}` : ''}`;
    if (expect.error) {
      assert.ok(o.error, `expected error ${JSON.stringify(expect.error)}, ${seen}`);
      assert.equal(o.error.status, expect.error.status, 'error status');
      assert.equal(o.error.code, expect.error.code, 'error code');
      return;
    }
    assert.ok(o.result, `expected a result, ${seen}`);
    const r = o.result;
    if (expect.path) assert.equal(r.path, expect.path, seen);
    if (expect.reason) assert.equal(r.reason, expect.reason, seen);
    if (expect.encoding) assert.equal(r.encoding, expect.encoding, 'encoding');
    if (expect.digest) assert.equal(r.digest, expect.digest, 'digest');
    if (expect.canonical !== undefined) {
      assert.equal(r.path, 'normd', `canonical bytes need a normd answer, ${seen}`);
      assert.equal(zlib.gunzipSync(r.data).toString('utf8'), expect.canonical, 'canonical bytes');
    }
  }

  async expectRequests(v) {
    assert.ok(this.server.kind === 'fault', 'expect_requests needs the fault server');
    const seen = JSON.parse(await getText(this.server.socketPath, '/_fault/requests'));
    const mine = seen.filter((r) => r.path === (v.path || '/norm'));
    if ('count' in v) assert.equal(mine.length, v.count, `requests to ${v.path || '/norm'}`);
    if (v.last_headers) {
      const last = mine.at(-1);
      assert.ok(last, 'no request to check the headers of');
      for (const [name, want] of Object.entries(v.last_headers)) assert.equal(last.headers[name], want, `header ${name}`);
    }
  }
}

/** `"normd"`, a fallback reason, or `"error:<code>"`. */
function outcomeName(o) {
  if (o.error) return `error:${o.error.code}`;
  return o.result.path === 'normd' ? 'normd' : o.result.reason;
}

/** A dotted name of the kit's stats vocabulary, read from stats(). */
function statOf(s, name) {
  let v = s;
  for (const part of name.split('.')) v = v === null || v === undefined ? undefined : v[part];
  if (v === undefined && name.startsWith('errors_by_code.')) return 0;
  if (v === undefined) throw new Error(`stats has no ${name}`);
  return v;
}

/**
 * @typedef {{kind: 'fault'|'normd', socketPath: string, port: number, stop: () => Promise<void>,
 *            kill: () => Promise<void>, writeFlags: (doc: object) => void, diag: () => string}} Server
 */

/** Start `child`, keep the tail of its output, and give it a bounded stop. */
function supervise(child, kind) {
  let output = '';
  const keep = (d) => { output = (output + d).slice(-8192); };
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  const kill = async () => {
    if (!exited) child.kill('SIGKILL');
    await exit;
  };
  return {
    exit,
    exited: () => exited,
    output: () => output,
    kill,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
    diag: () => `\n--- ${kind} stderr (tail) ---\n${output}`,
  };
}

/** @returns {Promise<Server>} */
async function startFault(dir, scenarioPath) {
  const socketPath = path.join(dir, 'normd.sock');
  const portFile = path.join(dir, 'port');
  const child = spawn('python3', [path.join(KIT, 'fault_server.py'), '--socket', socketPath, '--tcp-port-file', portFile, scenarioPath],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const sup = supervise(child, 'fault_server.py');
  let stdout = '';
  child.stdout.on('data', (d) => { stdout += d; });
  try {
    await waitFor(() => {
      if (sup.exited()) throw new Error(`fault_server.py exited early ${JSON.stringify(sup.exited())}${sup.diag()}`);
      return stdout.includes('ready\n');
    }, { maxMs: START_MS, everyMs: 20, what: 'fault_server.py ready' });
  } catch (err) {
    await sup.kill();
    throw err;
  }
  return {
    kind: 'fault', socketPath, port: Number(fs.readFileSync(portFile, 'utf8')),
    stop: sup.stop, kill: sup.kill, diag: sup.diag,
    writeFlags() { throw new Error('write_flags needs the real normd'); },
  };
}

/** @returns {Promise<Server>} */
async function startNormd(dir, n) {
  const socketPath = path.join(dir, 'normd.sock');
  const flagsFile = path.join(dir, 'flags.json');
  const writeFlags = (doc) => {
    // As a ConfigMap update does: never a half-written file under normd's poll.
    fs.writeFileSync(`${flagsFile}.tmp`, JSON.stringify(doc));
    fs.renameSync(`${flagsFile}.tmp`, flagsFile);
  };
  writeFlags(n.flags || {});
  const args = ['serve', '--socket', socketPath, '--listen', '127.0.0.1:0', '--schemas', SCHEMAS, '--flags', flagsFile,
    '--flags-poll-ms', '50', '--drain-delay-ms', '0', ...(n.args || [])];
  const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const sup = supervise(child, 'normd');
  let port = 0;
  try {
    await waitFor(async () => {
      if (sup.exited()) throw new Error(`normd exited early ${JSON.stringify(sup.exited())}${sup.diag()}`);
      if (!port) port = servingPort(sup.output());
      if (!port) return false;
      try {
        return (await get(socketPath, '/readyz')).status === 200;
      } catch {
        return false;
      }
    }, { maxMs: START_MS, everyMs: 50, what: `normd ready (${BIN} ${args.join(' ')})${sup.diag()}` });
  } catch (err) {
    await sup.kill();
    throw err;
  }
  return { kind: 'normd', socketPath, port, stop: sup.stop, kill: sup.kill, diag: sup.diag, writeFlags };
}

/** The TCP port of normd's `normd serving` log line (`"listen":"127.0.0.1:PORT"`), or 0. */
function servingPort(stderr) {
  for (const line of stderr.split('\n')) {
    if (!line.includes('normd serving')) continue;
    // Matched in the text, wherever the log format nests its fields.
    const m = /"listen":\s*"[^"]*:(\d+)"/.exec(line);
    if (m) return Number(m[1]);
  }
  return 0;
}

function get(socketPath, urlPath) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, agent: false, timeout: 2000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}

async function getText(socketPath, urlPath) {
  const r = await get(socketPath, urlPath);
  assert.equal(r.status, 200, `GET ${urlPath}`);
  return r.body;
}
