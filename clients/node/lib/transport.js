'use strict';
/**
 * How the client reaches normd: the Unix socket, then TCP on 127.0.0.1 when
 * the socket cannot be connected, over one keep-alive agent; and the local
 * deadlines of every exchange still out, on one timer.
 */

const http = require('node:http');
const { DeadlineQueue } = require('./deadlines');
const { Exchange } = require('./exchange');

/** Code of the error an exchange still out gets when the client is closed. */
const CLIENT_CLOSED = 'NORMD_CLIENT_CLOSED';

class Transport {
  /**
   * @param {object} o
   * @param {string} [o.socketPath]
   * @param {string} [o.host]
   * @param {number} [o.port]
   * @param {number} o.maxSockets
   * @param {number} o.maxFreeSockets
   * @param {number} o.idleSocketTimeoutMs
   * @param {number} o.maxResponseBytes
   */
  constructor(o) {
    /** @type {Array<{name: 'unix'|'tcp', socketPath?: string, host?: string, port?: number}>} in order of preference */
    this.targets = [];
    if (o.socketPath) this.targets.push({ name: 'unix', socketPath: o.socketPath });
    if (o.port) this.targets.push({ name: 'tcp', host: o.host || '127.0.0.1', port: o.port });
    this.agent = new http.Agent({
      keepAlive: true,
      // Close idle keep-alive sockets before normd's --header-read-timeout-ms (10 s by
      // default) does, so a request is rarely written onto a socket the server is closing.
      timeout: o.idleSocketTimeoutMs,
      maxSockets: o.maxSockets,
      maxFreeSockets: o.maxFreeSockets,
      scheduling: 'lifo',
    });
    this.maxResponseBytes = o.maxResponseBytes;
    /** Local deadlines of every in-flight exchange, on one unref'd timer. */
    this.deadlines = new DeadlineQueue();
    this.resetCounters();
  }

  resetCounters() {
    this.counters = { retries: 0, transport_failovers: 0, by_transport: { unix: 0, tcp: 0 } };
  }

  /**
   * One HTTP exchange with normd, body read fully. Rejects with code
   * NORMD_LOCAL_TIMEOUT when `timeoutMs` passes (the request is destroyed, so
   * normd sees the connection close), or with the socket error.
   * Tries the next transport when the socket cannot be connected at all, and
   * retries once when a reused keep-alive socket turns out to be dead.
   * The state of the exchange lives in one Exchange object.
   * @param {string} method
   * @param {string} path
   * @param {Record<string, string>} headers
   * @param {Buffer|undefined} payload
   * @param {number} timeoutMs
   * @returns {Promise<{status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, transport: string}>}
   */
  request(method, path, headers, payload, timeoutMs) {
    return new Promise((resolve, reject) => {
      new Exchange(this, method, path, headers, payload, timeoutMs, resolve, reject).start();
    });
  }

  /**
   * End every exchange still out, including those waiting for a socket behind
   * maxSockets (which would otherwise open new connections after the close),
   * and destroy every socket.
   */
  close() {
    for (const exchange of this.deadlines.takeAll()) {
      const err = new Error('the normd client was closed');
      /** @type {any} */ (err).code = CLIENT_CLOSED;
      exchange.abort(err);
    }
    this.agent.destroy();
  }
}

module.exports = { Transport };
