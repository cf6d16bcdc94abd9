'use strict';
/**
 * The in-app path: the same job normd does, on this process's heap —
 * JSON.parse, recursive key sort + trim of strings, JSON Schema 2020-12
 * validation (ajv), compact JSON.stringify, gzip level 1. It is the "before"
 * of the demo and the fallback of the normd client.
 */
const fs = require('node:fs');
const zlib = require('node:zlib');
const Ajv2020 = require('ajv/dist/2020');

/** A request the in-app path refuses: 400 bad JSON, 422 schema violation. */
class InAppError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {Array<{instance_path: string, schema_path: string, message: string}>} [errors]
   */
  constructor(status, code, message, errors) {
    super(message);
    this.name = 'InAppError';
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

/**
 * Sorted keys, trimmed strings. (JS objects list integer-like keys first
 * whatever the insertion order, so such keys are not byte-sorted; orders have none.)
 */
function normalize(v) {
  if (typeof v === 'string') return v.trim();
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) {
      if (k === '__proto__') Object.defineProperty(out, k, { value: normalize(v[k]), enumerable: true, writable: true, configurable: true });
      else out[k] = normalize(v[k]);
    }
    return out;
  }
  return v;
}

const MAX_ERRORS = 20;

/**
 * @param {string} schemaPath JSON Schema (draft 2020-12) file
 * @param {{gzipLevel?: number}} [opts]
 * @returns {(body: Buffer|string) => Buffer} throws InAppError
 */
function makeInAppNorm(schemaPath, opts = {}) {
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);
  const level = opts.gzipLevel ?? 1;

  return function inAppNorm(body) {
    let value;
    try {
      value = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : String(body));
    } catch (err) {
      throw new InAppError(400, 'invalid_json', err.message);
    }
    const doc = normalize(value);
    if (!validate(doc)) {
      const errors = (validate.errors || []).slice(0, MAX_ERRORS).map((e) => ({
        instance_path: e.instancePath,
        schema_path: e.schemaPath,
        message: e.message || 'invalid',
      }));
      throw new InAppError(422, 'schema_violation', 'the order does not match the schema', errors);
    }
    return zlib.gzipSync(JSON.stringify(doc), { level });
  };
}

module.exports = { makeInAppNorm, normalize, InAppError };
