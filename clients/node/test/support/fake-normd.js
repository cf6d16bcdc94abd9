'use strict';
/**
 * A programmable stand-in for normd on a temp Unix socket (and optionally
 * 127.0.0.1:0), for the client's unit tests. Each test sets `normHandler` to
 * shape the answer of POST /norm; GET /flags serves `flags`.
 */
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const crypto = require('node:crypto');

/** Recursive key sort + compact stringify: RFC 8785 for well-formed I-JSON. */
function canonical(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      const o = {};
      for (const k of Object.keys(v).sort()) o[k] = sort(v[k]);
      return o;
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

function problem(res, status, code, extra = {}, headers = {}) {
  const body = JSON.stringify({ type: `https://normd.example.invalid/problems/${code}`, title: code, status, detail: `fake ${code}`, code, ...extra });
  res.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** The happy path of POST /norm: canonicalize and gzip. */
function ok(req, res, body) {
  let canon;
  try {
    canon = Buffer.from(canonical(JSON.parse(body.toString('utf8'))), 'utf8');
  } catch {
    problem(res, 400, 'invalid_json');
    return;
  }
  const out = zlib.gzipSync(canon, { level: 1 });
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': out.length,
    'x-normd-encoding': 'gzip',
    'x-normd-input-bytes': body.length,
    'x-normd-canonical-bytes': canon.length,
    'x-normd-output-bytes': out.length,
    'x-normd-digest': `sha-256=:${crypto.createHash('sha256').update(canon).digest('base64')}:`,
    'x-request-id': req.headers['x-request-id'] || crypto.randomUUID(),
  });
  res.end(out);
}

/**
 * @param {{tcp?: boolean}} [opts]
 */
async function startFakeNormd(opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'normd-fake-'));
  const socketPath = path.join(dir, 'normd.sock');
  const fake = {
    dir,
    socketPath,
    port: 0,
    /** @type {{version: string, mtime: string|null, flags: object}} */
    flags: { version: 'v1', mtime: null, flags: { norm: { enabled: true, rollout_percent: 100 } } },
    /** @type {null | ((req: http.IncomingMessage, res: http.ServerResponse) => void)} replaces GET /flags */
    flagsHandler: null,
    /** @type {(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void} */
    normHandler: ok,
    normRequests: 0,
    /** TCP/Unix connections accepted, to check keep-alive reuse. */
    connections: 0,
    flagsRequests: 0,
    /** POST /norm requests whose connection closed before an answer was sent. */
    abandoned: 0,
    /** Last POST /norm request seen: method, url, headers, body. */
    last: null,
    servers: [],
    setFlag(norm, version) {
      this.flags = { version: version || String(Date.now()), mtime: new Date().toISOString(), flags: { norm } };
    },
  };

  const handler = (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url, 'http://x');
      if (req.method === 'GET' && url.pathname === '/flags') {
        fake.flagsRequests++;
        if (fake.flagsHandler) { fake.flagsHandler(req, res); return; }
        const doc = JSON.stringify(fake.flags);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(doc) });
        res.end(doc);
        return;
      }
      if (req.method === 'POST' && url.pathname === '/norm') {
        fake.normRequests++;
        fake.last = { method: req.method, url: req.url, query: Object.fromEntries(url.searchParams), headers: req.headers, body };
        res.on('close', () => { if (!res.writableFinished) fake.abandoned++; });
        fake.normHandler(req, res, body);
        return;
      }
      problem(res, 404, 'not_found');
    });
  };

  const listen = (server, target) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(target, () => { server.off('error', reject); resolve(); });
  });

  const track = (server) => { server.on('connection', () => { fake.connections++; }); return server; };
  const unixServer = track(http.createServer(handler));
  await listen(unixServer, socketPath);
  fake.servers.push(unixServer);
  if (opts.tcp) {
    const tcpServer = track(http.createServer(handler));
    await listen(tcpServer, { host: '127.0.0.1', port: 0 });
    fake.port = /** @type {import('node:net').AddressInfo} */ (tcpServer.address()).port;
    fake.servers.push(tcpServer);
  }

  fake.close = async () => {
    await Promise.all(fake.servers.map((s) => new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    })));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  /** Close only the Unix listener (the socket file goes with it). */
  fake.closeUnix = () => new Promise((resolve) => {
    unixServer.close(() => resolve());
    unixServer.closeAllConnections();
  });
  return fake;
}

/**
 * Poll `fn` until it returns truthy, every `everyMs`, for at most `maxMs`.
 * @template T
 * @param {() => T | Promise<T>} fn
 * @param {{maxMs?: number, everyMs?: number, what?: string}} [o]
 * @returns {Promise<T>}
 */
async function waitFor(fn, o = {}) {
  const maxMs = o.maxMs ?? 5000;
  const everyMs = o.everyMs ?? 10;
  const until = Date.now() + maxMs;
  for (let i = 0; ; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= until) throw new Error(`timed out after ${maxMs} ms waiting for ${o.what || 'condition'}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

module.exports = { startFakeNormd, waitFor, canonical, problem, ok };
