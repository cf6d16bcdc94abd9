'use strict';
// Anchor for issue #16: normd's job in a Node app, in a loop: the demo app's own in-app path
// (loadtest/app/lib/inapp.js: JSON.parse, sort + trim, ajv 2020, JSON.stringify, gzip 1), CPU per call.
//
//   (cd loadtest/app && npm ci)      # ajv comes from the demo app's node_modules
//   taskset -c 0 node loadtest/anchors/node_loop.js --payloads ../shared/bench/payloads/4k \
//     --schema ../shared/bench/schemas/order.v1.json --count 10000
//
// Every *.json of --payloads in turn (sorted by name); --warmup calls first (default 2000:
// V8 has compiled the hot paths by then), then --count timed calls. Prints one JSON object:
// calls, CPU seconds from process.cpuUsage() (getrusage: user + system, every thread of the
// process, so V8's GC helper threads count too), on-CPU seconds summed over
// /proc/self/task/*/schedstat, and µs per call. The in-app path computes no SHA-256 digest
// (normd's answer carries one and the Rust anchor pays for it; natively a few µs per 4 KB call).
// Bounded: at most --count + --warmup calls and --max-seconds of wall time.

const fs = require('node:fs');
const path = require('node:path');
const { makeInAppNorm } = require('../app/lib/inapp');

function usage(msg) {
  if (msg) process.stderr.write(`node_loop: ${msg}\n`);
  process.stderr.write('usage: node_loop.js --payloads DIR --schema FILE [--count N] [--warmup N] [--max-seconds S]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { count: 10000, warmup: 2000, maxSeconds: 600 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      return argv[++i];
    };
    const int = () => {
      const n = Number(v());
      if (!Number.isInteger(n) || n < 0) usage(`${k}: expected an integer >= 0`);
      return n;
    };
    if (k === '--payloads') a.payloads = v();
    else if (k === '--schema') a.schema = v();
    else if (k === '--count') a.count = int();
    else if (k === '--warmup') a.warmup = int();
    else if (k === '--max-seconds') a.maxSeconds = int();
    else usage(`unknown argument ${k}`);
  }
  if (!a.payloads || !a.schema) usage('--payloads and --schema are required');
  return a;
}

/** On-CPU ns summed over this process's threads (0 where /proc is not there). */
function oncpuNs() {
  let total = 0n;
  let tids = [];
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return 0n;
  }
  for (const t of tids) {
    try {
      total += BigInt(fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

function main() {
  const a = parseArgs(process.argv.slice(2));
  const files = fs.readdirSync(a.payloads).filter((f) => f.endsWith('.json')).sort();
  if (files.length === 0) usage(`no *.json in ${a.payloads}`);
  const docs = files.map((f) => fs.readFileSync(path.join(a.payloads, f)));
  const norm = makeInAppNorm(a.schema, { gzipLevel: 1 });
  const deadline = process.hrtime.bigint() + BigInt(a.maxSeconds) * 1_000_000_000n;

  let outBytes = 0;
  let checksum = 0;
  const call = (i) => {
    const k = i % docs.length;
    let out;
    try {
      out = norm(docs[k]);
    } catch (err) {
      process.stderr.write(`node_loop: ${files[k]}: ${err.status || ''} ${err.message} ${JSON.stringify(err.errors || [])}\n`);
      process.exit(1);
    }
    return out.length;
  };

  for (let i = 0; i < a.warmup; i++) {
    call(i);
    if ((i & 255) === 0 && process.hrtime.bigint() > deadline) usage('warm-up ran out of --max-seconds');
  }
  const c0 = process.cpuUsage();
  const s0 = oncpuNs();
  const t0 = process.hrtime.bigint();
  let done = 0;
  for (; done < a.count; done++) {
    outBytes += call(a.warmup + done);
    checksum = (checksum * 31 + outBytes) >>> 0;
    if ((done & 255) === 0 && process.hrtime.bigint() > deadline) break;
  }
  const t1 = process.hrtime.bigint();
  const s1 = oncpuNs();
  const c = process.cpuUsage(c0);
  const per = (us) => (done > 0 ? us / done : 0);
  const oncpuUs = Number(s1 - s0) / 1e3;
  process.stdout.write(JSON.stringify({
    anchor: 'node_loop',
    job: 'loadtest/app/lib/inapp.js: JSON.parse, sort keys + trim strings, ajv 2020 (allErrors), JSON.stringify, zlib.gzipSync level 1 (no digest)',
    node: process.version,
    payloads: docs.length,
    payload_dir: a.payloads,
    mean_bytes: Math.round(docs.reduce((s, d) => s + d.length, 0) / docs.length),
    warmup_calls: a.warmup,
    calls: done,
    stopped_by_time: done < a.count,
    wall_s: Number(t1 - t0) / 1e9,
    cpu_s: (c.user + c.system) / 1e6,
    user_s: c.user / 1e6,
    system_s: c.system / 1e6,
    oncpu_s: oncpuUs / 1e6,
    cpu_us_per_call: per(c.user + c.system),
    oncpu_us_per_call: per(oncpuUs),
    out_bytes_per_call: done > 0 ? outBytes / done : 0,
    checksum: checksum.toString(16),
  }) + '\n');
}

main();
