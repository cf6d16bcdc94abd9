'use strict';
/**
 * Every knob of the demo app, read from the environment in one place and
 * checked completely: all problems are reported at once.
 */

/**
 * @param {NodeJS.ProcessEnv} env
 * @returns {{config?: import('./app').AppConfig, errors: string[]}}
 */
function configFromEnv(env) {
  const errors = [];
  const int = (name, dflt, min, max) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      errors.push(`${name}=${raw}: expected an integer ${min}..${max}`);
      return dflt;
    }
    return n;
  };
  const opt = (name) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);

  const schemaPath = opt('SCHEMA');
  if (!schemaPath) errors.push('SCHEMA: path of the order JSON Schema is required');
  const flags = opt('NORMD_FLAGS_FROM_SIDECAR');
  if (flags !== undefined && flags !== '0' && flags !== '1') errors.push(`NORMD_FLAGS_FROM_SIDECAR=${flags}: expected 0 or 1`);

  const config = {
    host: '127.0.0.1',
    port: int('PORT', 8090, 0, 65535),
    schemaPath: schemaPath || '',
    maxBodyBytes: int('MAX_BODY_BYTES', 1024 * 1024, 1, 1 << 30),
    normdSocket: opt('NORMD_SOCKET'),
    normdPort: int('NORMD_PORT', undefined, 1, 65535),
    flagsFromSidecar: flags === '1',
    rollout: int('ROLLOUT', undefined, 0, 100),
    normdProfile: opt('NORMD_PROFILE'),
    normdSchema: opt('NORMD_SCHEMA'),
    normdEncoding: opt('NORMD_ENCODING'),
    normdLevel: int('NORMD_LEVEL', undefined, 0, 22),
    normdDeadlineMs: int('NORMD_DEADLINE_MS', 20, 1, 600000),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 5000, 0, 600000),
  };
  return errors.length ? { errors } : { config, errors };
}

module.exports = { configFromEnv };
