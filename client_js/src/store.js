// First-party storage that never throws: Safari private mode, disabled storage or a full quota
// make localStorage/sessionStorage throw, and the tracker must never break the page over it.
export const LOCAL = "localStorage";
export const SESSION = "sessionStorage";

/** The JSON value stored under `key`, or null. */
export function load(area, key) {
  try {
    return JSON.parse(window[area].getItem(key));
  } catch (e) {
    return null;
  }
}

/** Stores `value` as JSON; `undefined` removes the key. */
export function save(area, key, value) {
  try {
    value === undefined ? window[area].removeItem(key) : window[area].setItem(key, JSON.stringify(value));
  } catch (e) {
    /* quota or disabled storage: the state stays in memory only */
  }
}

/** Random id `p_` + 22 url-safe chars (128 bits, crypto.getRandomValues): no fingerprinting. */
export function randomId(prefix) {
  let s = prefix;
  for (const b of crypto.getRandomValues(new Uint8Array(22))) s += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[b & 63];
  return s;
}
