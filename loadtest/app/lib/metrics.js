'use strict';
/**
 * What the demo exists to show: the app's RSS and heap, its GC pauses, its
 * event-loop delay and its endpoint latency, all resettable so a load test
 * can measure one phase (rollout 0 %, then 100 %) at a time.
 */
const v8 = require('node:v8');
const { PerformanceObserver, monitorEventLoopDelay, constants } = require('node:perf_hooks');
const { Histogram } = require('./histogram');

/** Sampling interval of the event-loop delay monitor; its histogram holds whole intervals. */
const ELD_RESOLUTION_MS = 10;

const GC_KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * Committed (`size_bytes`) and used bytes of every V8 heap space; the sizes add
 * up to `heap_total_bytes`. The one to watch is `new_space`: V8 doubles its two
 * semi-spaces each time the bytes that survived its scavenges since the last
 * doubling exceed (roughly) one semi-space, up to 2 x 16 MiB with Node 20's
 * defaults on the load-test machine (--max-semi-space-size caps it); it keeps
 * them while the allocation rate stays high; and a large new space makes V8
 * start incremental marking (hence mark-compacts) while the old generation is
 * still small. That was the whole heap_total difference (16 MiB) between the
 * two rollouts before the client stopped keeping per-call closures alive (see
 * README, "Reading RSS and GC between the two rollouts").
 */
function heapSpaces() {
  /** @type {Record<string, {size_bytes: number, used_bytes: number}>} */
  const out = {};
  for (const s of v8.getHeapSpaceStatistics()) out[s.space_name] = { size_bytes: s.space_size, used_bytes: s.space_used_size };
  return out;
}

class Metrics {
  constructor() {
    this.startedAt = Date.now();
    this.latency = new Histogram(); // µs
    this.gc = new Histogram(); // µs
    this.eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
    this.eld.enable();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        this.gc.record(e.duration * 1000);
        const kind = GC_KINDS[/** @type {any} */ (e).detail?.kind] || 'other';
        this.gcByKind[kind] = (this.gcByKind[kind] || 0) + 1;
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.reset();
  }

  reset() {
    this.resetAt = Date.now();
    this.cpuAtReset = process.cpuUsage();
    this.latency.reset();
    this.gc.reset();
    this.gcByKind = {};
    this.eld.reset();
    this.requests = 0;
    this.byPath = { normd: 0, inapp: 0 };
    /** @type {Record<string, number>} */
    this.byStatus = {};
    /** @type {Record<string, number>} */
    this.inappReasons = {};
  }

  /**
   * @param {number} status
   * @param {'normd'|'inapp'|null} path who did the work (null: rejected before or by it)
   * @param {number} micros handler latency
   * @param {string} [reason] why in-app, when the client chose it
   */
  observe(status, path, micros, reason) {
    this.requests++;
    this.byStatus[status] = (this.byStatus[status] || 0) + 1;
    if (path) this.byPath[path]++;
    if (reason) this.inappReasons[reason] = (this.inappReasons[reason] || 0) + 1;
    this.latency.record(micros);
  }

  snapshot() {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage(this.cpuAtReset);
    const ns = (x) => (Number.isFinite(x) ? Math.round(x / 1e3) / 1e3 : 0); // ns → ms, 3 decimals
    // The monitor records whole sampling intervals; the delay is what exceeds the interval.
    const late = (x) => (this.eld.count > 0 ? Math.max(0, Math.round((ns(x) - ELD_RESOLUTION_MS) * 1000) / 1000) : 0);
    return {
      time_unit: 'ms',
      uptime_s: Math.round((Date.now() - this.startedAt) / 100) / 10,
      since_reset_s: Math.round((Date.now() - this.resetAt) / 100) / 10,
      process: {
        rss_bytes: mem.rss,
        heap_used_bytes: mem.heapUsed,
        heap_total_bytes: mem.heapTotal,
        external_bytes: mem.external,
        array_buffers_bytes: mem.arrayBuffers,
        max_rss_bytes: process.resourceUsage().maxRSS * 1024,
        cpu_user_ms: Math.round(cpu.user / 1000),
        cpu_system_ms: Math.round(cpu.system / 1000),
        heap_spaces: heapSpaces(),
      },
      gc: { ...this.gc.summary(1000), by_kind: { ...this.gcByKind } },
      event_loop_delay: {
        samples: this.eld.count,
        p50: late(this.eld.percentile(50)),
        p99: late(this.eld.percentile(99)),
        max: late(this.eld.max),
        mean: late(this.eld.mean),
      },
      latency: this.latency.summary(1000),
      requests: {
        total: this.requests,
        by_path: { ...this.byPath },
        by_status: { ...this.byStatus },
        inapp_reasons: { ...this.inappReasons },
      },
    };
  }

  close() {
    this.gcObserver.disconnect();
    this.eld.disable();
  }
}

module.exports = { Metrics };
