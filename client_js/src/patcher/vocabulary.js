// The closed patch vocabulary (PROTOCOL §5, §5.1), checked on the client as defence in depth.
// The server refuses rules that render anything outside it (server/microadjust/engine/patches.py);
// this module refuses the same things again so that a compromised or buggy server, a proxy, or
// a hostile rule that slipped through can never reach the DOM. The limits and patterns mirror
// engine/patches.py one for one; protocol/vectors/patches/ proves they agree.
//
// One check serves the patch, its experiment and every op: a list of the object's fields (`?` =
// optional, any other field refuses it) and VALID, which checks each field's value.

const NAME = /^[\w-]{1,64}$/; // class names, slot names: plain tokens, no quotes or selectors
const IDENT = /^[A-Za-z][\w-]{0,63}$/; // template ids and template text-slot names
const KEY = /^[\w.:/-]{1,128}$/; // data-ma-item keys, matched by attribute value only
const RULE = /^[\w.:-]{1,64}$/; // rule ids, experiment and variant names
// aria-* and data-* carry no behaviour in any browser; data-ma-* is the markup contract the
// patcher itself relies on, so a patch may not rewrite it.
const ATTR = /^(aria-[a-z]+(-[a-z]+)*|data-(?!ma-)[a-z0-9]+(-[a-z0-9]+)*|title|hidden)$/;
// None of these properties takes a URL or changes how the page is laid out structurally
// (no position/display/width): an adjustment emphasises, it does not redesign.
const STYLE_PROP =
  /^(background-color|border-(color|radius|style|width)|box-shadow|color|font-(size|style|weight)|letter-spacing|line-height|opacity|order|outline(-(color|offset|style|width))?|text-(decoration|transform)|transform|transition|visibility)$/;
// The character class keeps out quotes, `;`, braces, `:` and `\` (CSS escapes would hide the
// functions below), so a value can never leave the declaration it is written into.
const STYLE_VALUE = /^[\w #%.,()+/*-]{0,128}$/;
const STYLE_FUNC = /(url|expression|image|image-set|element)\(/;
// Text only ever goes to textContent, so markup in it is inert; it is still refused because a
// patch carrying markup is a mistake or an attack, and integrators' subscribe() callbacks
// might not be as careful.
const MARKUP = /<\s*[a-z!/?]|j\s*a\s*v\s*a\s*s\s*c\s*r\s*i\s*p\s*t\s*:|&#|&[a-z]+;/i;
const CONTROL = /[\0-\x08\v\f\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const SELECTOR_BAD = /[<{};\\`]|url\(|javascript:|expression\(/i;

const str = (v) => typeof v == "string";
const test = (re) => (v) => str(v) && re.test(v);
const int = (lo, hi) => (v) => Number.isInteger(v) && v >= lo && v <= hi;
const text = (v, max = 512) => str(v) && v.length <= max && !CONTROL.test(v) && !MARKUP.test(v);
const oneOf = (list) => (v) => list.split(" ").includes(v);
const object = (v) => v && typeof v == "object" && !Array.isArray(v);

// op -> its fields.
const OPS = {
  addClass: "op class",
  removeClass: "op class",
  setText: "op text",
  setStyle: "op prop value",
  setAttr: "op name value",
  reorder: "op keys",
  show: "op",
  hide: "op",
  template: "op id slots? where?",
  notify: "op kind text title?",
}

// Returns the path of the first problem of `obj` (of `kind`, with `fields`), or "": unknown
// fields first, then the fields in the order of the server's checks. Field checks that look
// inside (ops, target) throw the path of a problem they found deeper down.
function check(obj, fields, kind, path) {
  fields = fields.split(" ");
  for (const f in obj) if (!fields.includes(f) && !fields.includes(f + "?")) return path + f;
  for (const f of fields) {
    const name = f.replace("?", "");
    if (name in obj ? !(VALID[kind + name] || VALID[name])(obj[name]) : f == name) return path + name;
  }
  return "";
}

const must = (path) => {
  if (path) throw path;
  return 1;
};

// field (or shape + field where shapes disagree) -> is the value acceptable?
const VALID = {
  patchid: (v) => str(v) && v && v.length <= 256 && !CONTROL.test(v),
  rule: test(RULE),
  // §5: exactly one of these
  target: (t) => {
    const [kind, ...more] = Object.keys(Object(t));
    return !more.length && Object.hasOwn(TARGETS, kind) && must(!(str(t[kind]) && TARGETS[kind](t[kind])) && "target." + kind);
  },
  ops: (ops) =>
    Array.isArray(ops) && ops.length && ops.length <= 16 && ops.every((op, i) => must(object(op) && Object.hasOwn(OPS, op.op) ? check(op, OPS[op.op], op.op, `ops[${i}].`) : `ops[${i}].op`)),
  ttl: int(0, 864e5),
  priority: int(-1000, 1000),
  cause: int(0, Infinity),
  op: str, // checked before: a known op
  exp: (e) => object(e) && !check(e, "id variant", "exp", ""),
  expid: test(RULE),
  variant: test(RULE),
  class: test(NAME),
  text,
  title: (v) => text(v, 128),
  prop: test(STYLE_PROP),
  setStylevalue: (v) => test(STYLE_VALUE)(v) && !STYLE_FUNC.test(v.toLowerCase().replace(/ /g, "")),
  name: test(ATTR),
  setAttrvalue: (v) => v === !!v || text(v), // true/false for `hidden`
  keys: (k) => Array.isArray(k) && k.length <= 200 && k.every(test(KEY)) && new Set(k).size == k.length,
  id: test(IDENT),
  slots: (s) => object(s) && Object.keys(s).length <= 16 && Object.keys(s).every((n) => IDENT.test(n) && text(s[n])),
  where: oneOf("append prepend replace"),
  kind: oneOf("toast slidein badge"),
};

const TARGETS = {
  slot: (v) => NAME.test(v),
  item: (v) => KEY.test(v),
  sel: (v) => v.trim() && v.length <= 256 && !SELECTOR_BAD.test(v) && !CONTROL.test(v),
};

/**
 * Checks a patch (§5) against the vocabulary. Returns "" when it may be applied, else the path
 * of the first problem ("ops[2].value", "target", ...), which becomes the `refused` reason.
 */
export function checkPatch(patch) {
  if (!object(patch)) return "patch";
  try {
    return check(patch, "id rule target ops ttl priority cause exp?", "patch", "");
  } catch (path) {
    return path;
  }
}
