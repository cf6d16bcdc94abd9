'use strict';
/**
 * One timer for all of a client's in-flight deadlines.
 *
 * A setTimeout per call allocates a Timeout (plus its callback closure) that
 * lives as long as the call, i.e. across the socket round trip, which is what
 * makes an object survive a young-generation collection and risk promotion.
 * Here every pending call is an entry in a binary min-heap ordered by its
 * absolute deadline, and a single unref'd timer is armed for the earliest one.
 *
 * The timer is re-armed lazily: removing an entry (the call was answered) never
 * touches it. When it fires it expires whatever is due and re-arms for the
 * next pending deadline, if any. With one deadline for most calls, each new
 * call's deadline is later than the armed one, so at a steady rate the timer is
 * re-created about once per timeout period instead of once per call.
 *
 * Entries are the callers' own objects (no wrapper per call): they carry
 * `deadlineAt` (ms, on the queue's clock), `deadlineIndex` (their slot in the
 * heap, -1 when not queued; owned by the queue) and `onDeadline()`.
 */

/**
 * @typedef {object} DeadlineEntry
 * @property {number} deadlineAt absolute deadline, on the queue's clock
 * @property {number} deadlineIndex heap slot, -1 when not queued (the queue maintains it)
 * @property {() => void} onDeadline called once, when the deadline has passed and the entry is still queued
 */

class DeadlineQueue {
  /** @param {() => number} [now] monotonic ms clock, default performance.now */
  constructor(now) {
    this._now = now || (() => performance.now());
    /** @type {DeadlineEntry[]} min-heap on deadlineAt */
    this._heap = [];
    /** @type {NodeJS.Timeout|null} */
    this._timer = null;
    /** When the armed timer is due (Infinity when none is armed). */
    this._timerAt = Infinity;
    // One callback for the life of the queue, not one per arming.
    this._onTimer = () => this._fire();
  }

  /** Number of pending entries. */
  get size() {
    return this._heap.length;
  }

  /**
   * Start watching `entry.deadlineAt`. An entry already queued is not added twice.
   * @param {DeadlineEntry} entry
   */
  add(entry) {
    if (entry.deadlineIndex >= 0) return;
    const heap = this._heap;
    entry.deadlineIndex = heap.length;
    heap.push(entry);
    this._up(entry.deadlineIndex);
    // Only an entry due before the armed timer needs a new one.
    if (entry.deadlineAt < this._timerAt) this._arm(entry.deadlineAt);
  }

  /**
   * Stop watching `entry` (its call settled). A no-op when it is not queued.
   * The timer is left as it is: firing with nothing due costs less than
   * re-arming it on every answer.
   * @param {DeadlineEntry} entry
   */
  remove(entry) {
    const i = entry.deadlineIndex;
    if (i < 0) return;
    const heap = this._heap;
    entry.deadlineIndex = -1;
    const last = /** @type {DeadlineEntry} */ (heap.pop());
    if (i === heap.length) return; // it was the last slot
    heap[i] = last;
    last.deadlineIndex = i;
    this._down(i);
    this._up(last.deadlineIndex);
  }

  /**
   * Remove and return every pending entry (none of them gets onDeadline), and
   * disarm the timer: for a client that is closing.
   * @returns {DeadlineEntry[]}
   */
  takeAll() {
    const all = this._heap;
    this._heap = [];
    for (const e of all) e.deadlineIndex = -1;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    this._timerAt = Infinity;
    return all;
  }

  /** @param {number} at */
  _arm(at) {
    if (this._timer) clearTimeout(this._timer);
    this._timerAt = at;
    // Timers may fire a little early against performance.now() (libuv's loop
    // clock is cached per iteration); _fire() re-checks and re-arms, so an
    // entry is never expired before its deadline.
    // setTimeout takes at most 2^31-1 ms (beyond, Node fires after 1 ms and warns):
    // a far deadline is armed in steps, each firing re-arming for what is left.
    this._timer = setTimeout(this._onTimer, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(at - this._now()))));
    // A pending call keeps the process alive through its socket; an idle
    // client must not be kept alive by its deadline timer.
    this._timer.unref();
  }

  _fire() {
    this._timer = null;
    this._timerAt = Infinity;
    const heap = this._heap;
    const now = this._now();
    while (heap.length > 0 && heap[0].deadlineAt <= now) {
      const e = heap[0];
      this.remove(e);
      e.onDeadline();
    }
    // onDeadline() may have queued (and armed for) a new entry.
    if (heap.length > 0 && heap[0].deadlineAt < this._timerAt) this._arm(heap[0].deadlineAt);
  }

  /** @param {number} i */
  _up(i) {
    const heap = this._heap;
    const e = heap[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p].deadlineAt <= e.deadlineAt) break;
      heap[i] = heap[p];
      heap[i].deadlineIndex = i;
      i = p;
    }
    heap[i] = e;
    e.deadlineIndex = i;
  }

  /** @param {number} i */
  _down(i) {
    const heap = this._heap;
    const n = heap.length;
    const e = heap[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r].deadlineAt < heap[l].deadlineAt ? r : l;
      if (heap[c].deadlineAt >= e.deadlineAt) break;
      heap[i] = heap[c];
      heap[i].deadlineIndex = i;
      i = c;
    }
    heap[i] = e;
    e.deadlineIndex = i;
  }
}

/** The longest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

module.exports = { DeadlineQueue, MAX_TIMER_MS };
