'use strict';
/**
 * One HTTP exchange with normd: the request over the current transport, the
 * response body read into one buffer, the local deadline, transport failover
 * and the one retry on a dead keep-alive socket. Every failure ends as a
 * rejection (the socket error, LOCAL_TIMEOUT, a cut response); what it means
 * for the call is decided by the client (client.js, answer.js).
 */

const http = require('node:http');

/** Connect-phase errors: the socket is not there, so another transport may be. */
const CONNECT_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ENOTSOCK', 'EADDRNOTAVAIL', 'EPERM']);

/** Code of the rejection when the local deadline passes first. */
const LOCAL_TIMEOUT = 'NORMD_LOCAL_TIMEOUT';

/** The exchange a ClientRequest belongs to; cleared when that attempt is over. */
const kExchange = Symbol('normd.exchange');


/**
 * One HTTP exchange with normd across its attempts (transport failover, one
 * retry on a dead keep-alive socket), and its own entry in the transport's
 * DeadlineQueue.
 *
 * Why a class and module-level listeners instead of closures: everything here
 * lives for the whole socket round trip, and what is alive when a scavenge
 * runs gets copied, and promoted if it is still alive at the next one. Per
 * call this is one object (plus the promise and its two resolving
 * functions), where there were half a dozen closures, their contexts and a
 * Timeout; the listeners below are
 * shared by all calls and find their exchange through `req[kExchange]`
 * (`this` is the emitter: the request, or the response whose `.req` it is).
 * An attempt that is over has `req[kExchange] = null`, so its late events
 * (the destroy of a timed-out request, a close after an error) are ignored.
 */
class Exchange {
  /**
   * @param {import('./transport').Transport} transport
   * @param {string} method
   * @param {string} path
   * @param {Record<string, string>} headers
   * @param {Buffer|undefined} payload
   * @param {number} timeoutMs local timeout of the whole exchange, all attempts included
   * @param {(r: {status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, transport: string}) => void} resolve
   * @param {(err: Error) => void} reject
   */
  constructor(transport, method, path, headers, payload, timeoutMs, resolve, reject) {
    this.transport = transport;
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.payload = payload;
    this.timeoutMs = timeoutMs;
    this.resolve = resolve;
    this.reject = reject;
    /** DeadlineQueue entry: absolute local deadline (performance.now() clock) and heap slot. */
    this.deadlineAt = performance.now() + timeoutMs;
    this.deadlineIndex = -1;
    /** Index in transport.targets of the current attempt. */
    this.ti = 0;
    this.retried = false;
    /** @type {import('node:http').ClientRequest|null} the current attempt */
    this.req = null;
    this.gotResponse = false;
    /** @type {Buffer|null} body preallocated from Content-Length, filled up to `size` */
    this.body = null;
    /** @type {Buffer[]|null} body chunks when there is no Content-Length */
    this.chunks = null;
    this.size = 0;
  }

  start() {
    // First the request (http.request throws synchronously on a bad header,
    // and then there must be no deadline left queued), then the deadline.
    this._attempt();
    this.transport.deadlines.add(this);
  }

  _attempt() {
    const tr = this.transport;
    const t = tr.targets[this.ti];
    // A fixed-shape literal rather than a spread of the transport's options:
    // http.request copies it, so it is garbage as soon as the call returns.
    const req = http.request(t.socketPath !== undefined
      ? { socketPath: t.socketPath, agent: tr.agent, method: this.method, path: this.path, headers: this.headers }
      : { host: t.host, port: t.port, agent: tr.agent, method: this.method, path: this.path, headers: this.headers });
    req[kExchange] = this;
    this.req = req;
    this.gotResponse = false;
    req.on('error', onRequestError);
    req.on('response', onRequestResponse);
    req.end(this.payload);
  }

  /** The exchange is over (answered or failed): stop its deadline, ignore its request's later events. */
  _settle() {
    this.transport.deadlines.remove(this);
    /** @type {any} */ (this.req)[kExchange] = null;
  }

  /**
   * The current attempt failed: fail over to the next transport, retry once
   * on a dead keep-alive socket, or reject.
   * @param {any} err
   */
  fail(err) {
    const tr = this.transport;
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    const code = err && err.code;
    if (!this.gotResponse && performance.now() < this.deadlineAt) {
      if (CONNECT_CODES.has(code) && this.ti + 1 < tr.targets.length) {
        tr.counters.transport_failovers++;
        /** @type {any} */ (req)[kExchange] = null;
        this.ti++;
        this._attempt();
        return;
      }
      if (!this.retried && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) {
        // A keep-alive socket normd had already closed: safe to resend, the work is pure.
        tr.counters.retries++;
        /** @type {any} */ (req)[kExchange] = null;
        this.retried = true;
        this._attempt();
        return;
      }
    }
    this._settle();
    this.reject(err);
  }

  /**
   * The response is unusable (too large): fail the exchange now and destroy
   * the request, so the connection is not reused.
   * @param {Error} err
   */
  _cut(err) {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    this.fail(err);
    req.destroy(err);
  }

  /**
   * The client was closed: end the exchange now (already out of the deadline
   * queue), whether it waits for a socket, a response or its body.
   * @param {Error} err
   */
  abort(err) {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    this._settle();
    this.reject(err);
    req.destroy(err);
  }

  /** DeadlineQueue callback: the local deadline passed without a complete answer. */
  onDeadline() {
    const req = /** @type {import('node:http').ClientRequest} */ (this.req);
    const err = new Error(`normd did not answer within ${this.timeoutMs} ms`);
    /** @type {any} */ (err).code = LOCAL_TIMEOUT;
    // Settle first, then destroy: whatever the destroy makes req/res emit, in
    // whichever order, finds no exchange, so the cause stays our timeout.
    this._settle();
    this.reject(err);
    req.destroy(err); // normd sees the connection close and stops working for nobody
  }

  /** @param {import('node:http').IncomingMessage} res */
  onResponse(res) {
    this.gotResponse = true;
    const max = this.transport.maxResponseBytes;
    const declared = this.method === 'HEAD' ? -1 : declaredLength(res);
    if (declared > max) {
      // Known too large before a byte of it is read or allocated.
      this._cut(tooLargeError(max));
      return;
    }
    if (declared >= 0) {
      // The common case: one buffer of the announced size, filled in place,
      // instead of a chunk list and a Buffer.concat copy at the end.
      // allocUnsafe is fine: 'end' checks that every byte was written before
      // the buffer is handed out.
      this.body = Buffer.allocUnsafe(declared);
    } else {
      this.chunks = [];
    }
    this.size = 0;
    res.on('data', onResponseData);
    res.on('error', onResponseError);
    res.on('close', onResponseClose);
    res.on('end', onResponseEnd);
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    const size = this.size + chunk.length;
    if (this.body !== null) {
      // Node's parser never delivers more than Content-Length; copy() would
      // silently truncate if it did, so make that a cut response instead.
      if (size > this.body.length) {
        this._cut(cutResponseError('normd sent more than its Content-Length'));
        return;
      }
      chunk.copy(this.body, this.size);
    } else {
      if (size > this.transport.maxResponseBytes) {
        this._cut(tooLargeError(this.transport.maxResponseBytes));
        return;
      }
      /** @type {Buffer[]} */ (this.chunks).push(chunk);
    }
    this.size = size;
  }

  /** @param {import('node:http').IncomingMessage} res */
  onEnd(res) {
    let body;
    if (this.body !== null) {
      if (this.size !== this.body.length) {
        this.fail(cutResponseError(`normd ended the response after ${this.size} of ${this.body.length} bytes`));
        return;
      }
      body = this.body;
    } else {
      body = Buffer.concat(/** @type {Buffer[]} */ (this.chunks), this.size);
    }
    const transport = this.transport.targets[this.ti].name;
    this._settle();
    this.transport.counters.by_transport[transport]++;
    this.resolve({ status: res.statusCode || 0, headers: res.headers, body, transport });
  }
}

// The shared listeners. `this` is the emitter (see Exchange).

/** @this {import('node:http').ClientRequest} @param {Error} err */
function onRequestError(err) {
  const ex = this[kExchange];
  if (ex) ex.fail(err);
}

/** @this {import('node:http').ClientRequest} @param {import('node:http').IncomingMessage} res */
function onRequestResponse(res) {
  const ex = this[kExchange];
  if (ex) ex.onResponse(res);
  else res.resume(); // an attempt already over: drain, never buffer
}

/** @this {import('node:http').IncomingMessage} @param {Buffer} chunk */
function onResponseData(chunk) {
  const ex = this.req[kExchange];
  if (ex) ex.onData(chunk);
}

/** @this {import('node:http').IncomingMessage} @param {Error} err */
function onResponseError(err) {
  const ex = this.req[kExchange];
  if (ex) ex.fail(err);
}

/** @this {import('node:http').IncomingMessage} */
function onResponseClose() {
  const ex = this.req[kExchange];
  if (ex && !this.complete) ex.fail(cutResponseError('normd closed the connection mid-response'));
}

/** @this {import('node:http').IncomingMessage} */
function onResponseEnd() {
  const ex = this.req[kExchange];
  if (ex) ex.onEnd(this);
}

/**
 * The body length announced by Content-Length, or -1 when there is none to
 * trust (no header, or a status that has no body whatever the header says).
 * @param {import('node:http').IncomingMessage} res
 */
function declaredLength(res) {
  const status = res.statusCode || 0;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return -1;
  const raw = res.headers['content-length'];
  if (raw === undefined) return -1;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

/** A response cut short: counted like a reset connection. */
function cutResponseError(message) {
  const e = new Error(message);
  /** @type {any} */ (e).code = 'ECONNRESET';
  return e;
}

function tooLargeError(max) {
  const e = new Error(`normd response larger than ${max} bytes`);
  /** @type {any} */ (e).code = 'NORMD_RESPONSE_TOO_LARGE';
  return e;
}

module.exports = { Exchange, LOCAL_TIMEOUT };
