#!/usr/bin/env node
'use strict';
/**
 * A stub of the normd *binary* (the subset of its CLI and HTTP contract the
 * integration test uses), so the integration test itself can be exercised
 * without the Rust build:
 *
 *   npm run test:stub   (NORMD_BIN=test/support/stub-normd.js node --test test/integration.test.js)
 *
 * It is not normd: no schemas, no profiles, no limits. It implements
 * `serve --socket PATH --listen ADDR|'' --schemas DIR --flags FILE`,
 * GET /readyz, /livez, /flags (flags file re-read when its mtime changes),
 * POST /norm (JCS via sorted JSON.stringify + gzip; 503 disabled when the
 * flag is off; 400 invalid_json / duplicate_key), and SIGTERM → readiness 503,
 * close, unlink the socket, exit 0.
 */
const http = require('node:http');
const fs = require('node:fs');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const { canonical, problem } = require('./fake-normd');

function parseArgs(argv) {
  if (argv[0] !== 'serve') {
    process.stderr.write('usage: stub-normd serve --socket PATH [--listen ADDR] [--schemas DIR] [--flags FILE]\n');
    process.exit(64);
  }
  const o = { socket: '', listen: '', schemas: '', flags: '' };
  for (let i = 1; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o) || i + 1 >= argv.length) {
      process.stderr.write(`stub-normd: bad argument ${argv[i]}\n`);
      process.exit(64);
    }
    o[k] = argv[i + 1];
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
let draining = false;
let flags = { version: 'default', mtime: null, flags: {} };
let flagsMtime = -1;

function loadFlags() {
  if (!opts.flags) return;
  try {
    const st = fs.statSync(opts.flags);
    if (st.mtimeMs === flagsMtime) return;
    const doc = JSON.parse(fs.readFileSync(opts.flags, 'utf8'));
    flags = { version: String(st.mtimeMs), mtime: st.mtime.toISOString(), flags: doc };
    flagsMtime = st.mtimeMs;
  } catch (err) {
    process.stderr.write(`stub-normd: flags reload failed: ${err.message}\n`);
  }
}
loadFlags();
const poll = setInterval(loadFlags, 50);

/** True if some object in valid JSON `text` repeats a member name. */
function hasDuplicateKey(text) {
  const stack = []; // a Set of names per open object, null per open array
  let prev = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && (prev === '{' || prev === ',')) {
        const name = JSON.parse(text.slice(i, j + 1));
        if (top.has(name)) return true;
        top.add(name);
      }
      prev = '"';
      i = j;
      continue;
    }
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') prev = c;
  }
  return false;
}

function json(res, status, doc) {
  const b = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
  res.end(b);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://normd');
    if (req.method === 'GET' && url.pathname === '/livez') return json(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url.pathname === '/readyz') {
      return json(res, draining ? 503 : 200, { ready: !draining, checks: { draining: draining ? 'fail' : 'ok' } });
    }
    if (req.method === 'GET' && url.pathname === '/flags') return json(res, 200, flags);
    if (req.method === 'POST' && url.pathname === '/norm') {
      const flag = flags.flags.norm || {};
      if (flag.enabled === false) return problem(res, 503, 'disabled', {}, { 'retry-after': '5' });
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      let value;
      try {
        value = JSON.parse(text);
      } catch {
        return problem(res, 400, 'invalid_json');
      }
      if (hasDuplicateKey(text)) return problem(res, 400, 'duplicate_key');
      const canon = Buffer.from(canonical(value), 'utf8');
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
      return res.end(out);
    }
    return problem(res, 404, 'not_found');
  });
});

if (!opts.socket) {
  process.stderr.write('stub-normd: --socket is required\n');
  process.exit(64);
}
if (opts.listen) process.stderr.write('stub-normd: ignoring --listen (Unix socket only)\n');
server.listen(opts.socket, () => process.stderr.write(`stub-normd: listening on ${opts.socket}\n`));

process.on('SIGTERM', () => {
  draining = true;
  clearInterval(poll);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => { server.closeAllConnections(); }, 1000).unref();
});
