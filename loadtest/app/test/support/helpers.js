'use strict';
/**
 * Test helpers: start the demo app as a real process on an ephemeral port,
 * talk HTTP to it, and a tiny stand-in sidecar on a temp Unix socket.
 */
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');

const APP_DIR = path.join(__dirname, '..', '..');
const FIXTURES = path.join(__dirname, '..', 'fixtures');

/**
 * Spawn server.js with PORT=0 and `env`; resolves once it logged "listening".
 * @param {Record<string,string>} env
 * @param {{maxMs?: number}} [o]
 */
function startApp(env, o = {}) {
  const maxMs = o.maxMs ?? 10000;
  const child = spawn(process.execPath, [path.join(APP_DIR, 'server.js')], {
    env: { PATH: process.env.PATH, PORT: '0', SCHEMA: path.join(FIXTURES, 'order.schema.json'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const lines = [];
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stderr.on('data', (d) => { err = (err + d).slice(-8192); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`app did not start within ${maxMs} ms\n${out}\n${err}`)); }, maxMs);
    exited.then((e) => { clearTimeout(timer); reject(new Error(`app exited early ${JSON.stringify(e)}\n${out}\n${err}`)); });
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        let rec;
        try { rec = JSON.parse(line); } catch { continue; }
        lines.push(rec);
        if (rec.msg === 'listening') {
          clearTimeout(timer);
          resolve({
            child,
            port: rec.port,
            listening: rec,
            lines,
            exited,
            stderr: () => err,
            /** SIGTERM and wait (bounded) for the exit. */
            async stop(maxStopMs = 15000) {
              child.kill('SIGTERM');
              const killer = setTimeout(() => child.kill('SIGKILL'), maxStopMs);
              const r = await exited;
              clearTimeout(killer);
              return r;
            },
          });
        }
      }
    });
  });
}

/**
 * @returns {Promise<{status: number, json: any, headers: http.IncomingHttpHeaders}>}
 */
function request(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent: false, timeout: 30000, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = text; }
        resolve({ status: res.statusCode, json, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Recursive key sort + compact stringify (RFC 8785 for plain I-JSON). */
function canonical(v) {
  const sort = (x) => {
    if (Array.isArray(x)) return x.map(sort);
    if (x && typeof x === 'object') return Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort(x[k])]));
    return x;
  };
  return JSON.stringify(sort(v));
}

/**
 * A stand-in normd on a temp Unix socket: GET /flags serves `flags`,
 * POST /norm calls `norm(req, res, body)` (default: 200, gzipped canonical JSON).
 */
async function startFakeSidecar() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-sidecar-'));
  const socketPath = path.join(dir, 'normd.sock');
  const fake = {
    socketPath,
    flags: { version: '1', mtime: null, flags: { norm: { enabled: true, rollout_percent: 100 } } },
    normRequests: 0,
    last: null,
    norm(req, res, body) {
      const canon = Buffer.from(canonical(JSON.parse(body.toString('utf8'))), 'utf8');
      const out = zlib.gzipSync(canon, { level: 1 });
      // Like normd, every 200 carries the digest: the client treats one without it as broken.
      const digest = `sha-256=:${crypto.createHash('sha256').update(canon).digest('base64')}:`;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-normd-encoding': 'gzip', 'x-normd-digest': digest, 'content-length': out.length });
      res.end(out);
    },
    problem(res, status, code, extra = {}) {
      const b = JSON.stringify({ type: 'about:blank', title: code, status, detail: code, code, ...extra });
      res.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(b), 'retry-after': '1' });
      res.end(b);
    },
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url, 'http://x');
      if (u.pathname === '/flags') {
        const b = JSON.stringify(fake.flags);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
        res.end(b);
      } else if (u.pathname === '/norm') {
        fake.normRequests++;
        fake.last = { query: Object.fromEntries(u.searchParams), headers: req.headers };
        fake.norm(req, res, Buffer.concat(chunks));
      } else {
        fake.problem(res, 404, 'not_found');
      }
    });
  });
  await new Promise((r) => server.listen(socketPath, r));
  fake.close = () => new Promise((r) => {
    server.close(() => { fs.rmSync(dir, { recursive: true, force: true }); r(); });
    server.closeAllConnections();
  });
  return fake;
}

/** Poll `fn` every `everyMs` until truthy, for at most `maxMs`. */
async function waitFor(fn, { maxMs = 10000, everyMs = 20, what = 'condition' } = {}) {
  const until = Date.now() + maxMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= until) throw new Error(`timed out after ${maxMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

module.exports = { startApp, request, startFakeSidecar, waitFor, FIXTURES, APP_DIR };
