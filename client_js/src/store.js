// First-party storage that never throws: Safari private mode, disabled cookies or a full quota
// make localStorage/sessionStorage throw, and the tracker must never break the page over it.
const area = (name) => {
  try {
    return window[name];
  } catch (e) {
    return null;
  }
};

export function get(name, key) {
  try {
    const v = area(name).getItem(key);
    return v == null ? null : JSON.parse(v);
  } catch (e) {
    return null;
  }
}

export function set(name, key, value) {
  try {
    area(name).setItem(key, JSON.stringify(value));
  } catch (e) {
    /* quota or disabled storage: the event stays in memory only */
  }
}

export function del(name, key) {
  try {
    area(name).removeItem(key);
  } catch (e) {
    /* nothing stored, nothing to clear */
  }
}

/** Random id `p_` + 22 url-safe chars (128 bits, crypto.getRandomValues): no fingerprinting. */
export function randomId(prefix) {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let s = prefix;
  for (let i = 0; i < 16; i++) s += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[b[i] & 63];
  return s;
}

export const LOCAL = "localStorage";
export const SESSION = "sessionStorage";
