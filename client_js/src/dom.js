// Element references for events (PROTOCOL §3.1): keys, never DOM content. An element is named by
// its data-ma-item (with data-ma-tags), else its data-ma-slot, else a short `tag#id`/`tag.class`.
export const TRACKED = "[data-ma-item],[data-ma-slot]";

export const now = () => performance.now();

/** The nearest tracked element at or above `node`, or null. */
export function tracked(node) {
  return node && node.closest ? node.closest(TRACKED) : null;
}

export function describe(el) {
  const cls = typeof el.className === "string" && el.className.trim().split(/\s+/)[0];
  return (el.tagName.toLowerCase() + (el.id ? "#" + el.id : cls ? "." + cls : "")).slice(0, 128);
}

export function tags(el) {
  const t = el.getAttribute("data-ma-tags");
  return t ? t.split(/[\s,]+/).filter(Boolean).slice(0, 16).map((s) => s.slice(0, 64)) : undefined;
}

/** `{item, tags?}` / `{slot}` / `{el}` for an element (PROTOCOL §3.1 common fields). */
export function ref(el) {
  const item = el.getAttribute("data-ma-item");
  const slot = el.getAttribute("data-ma-slot");
  // Undefined fields are left out of the JSON. Item keys are cut to the schema's 128 characters:
  // a page's over-long key would otherwise get its whole batch refused (PROTOCOL §3.1).
  return item ? { item: item.slice(0, 128), tags: tags(el) } : slot ? { slot } : { el: describe(el) };
}

/**
 * Field identity for form and key signals, or null when the field must not be observed at all:
 * password and card fields, hidden inputs, and anything inside [data-ma-ignore] (privacy, issue 3).
 */
export function field(el) {
  if (!el || !/^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) return null;
  const type = (el.getAttribute("type") || "").toLowerCase();
  const ac = (el.getAttribute("autocomplete") || "").toLowerCase();
  // Card fields by any autofill token: "cc-number", also "billing cc-number", "section-pay cc-csc".
  if (type === "password" || type === "hidden" || /(^|\s)cc-/.test(ac) || el.closest("[data-ma-ignore]")) return null;
  const f = { field: (el.name || el.id || describe(el)).slice(0, 64) };
  const form = el.form && (el.form.getAttribute("name") || el.form.id);
  if (form) f.form = form.slice(0, 64);
  return f;
}

/** "At least half visible": half of the element, or half of the viewport for tall elements. */
export function half(entry) {
  const root = entry.rootBounds;
  return (
    entry.isIntersecting &&
    (entry.intersectionRatio >= 0.5 || (root && entry.intersectionRect.height >= root.height / 2))
  );
}

export const THRESHOLDS = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];
