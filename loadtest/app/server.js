#!/usr/bin/env node
'use strict';
/**
 * normd-demo-app entry point: env → config → app, one JSON log line per
 * lifecycle event on stdout, graceful SIGTERM/SIGINT.
 */
const { configFromEnv } = require('./lib/config');
const { createApp } = require('./lib/app');

function log(fields) {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), ...fields })}\n`);
}

async function main() {
  const { config, errors } = configFromEnv(process.env);
  if (!config) {
    for (const e of errors) process.stderr.write(`normd-demo-app: ${e}\n`);
    process.exit(64);
  }
  let app;
  try {
    app = createApp(config);
  } catch (err) {
    process.stderr.write(`normd-demo-app: ${err.message}\n`);
    process.exit(64);
  }
  const port = await app.listen();
  log({ msg: 'listening', host: config.host, port, routing: app.routing, schema: config.schemaPath, normd_socket: config.normdSocket || null });

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log({ msg: 'stopping', signal });
    const { cut } = await app.close();
    log({ msg: 'stopped', cut_connections: cut });
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`normd-demo-app: ${err.stack || err}\n`);
  process.exit(1);
});
