'use strict';
/** Checks of the numeric settings, shared by the modules that take them. */

/**
 * `v` when it is a finite number >= 0, `dflt` when it is unset.
 * @param {string} name the setting, for the error message
 * @param {unknown} v
 * @param {number} dflt
 * @returns {number}
 */
function positiveNumber(name, v, dflt) {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`${name} must be a finite number >= 0`);
  return v;
}

module.exports = { positiveNumber };
