// The closed patch vocabulary (PROTOCOL §5, §5.1), checked on the client as defence in depth.
// The server refuses rules that render anything outside it (server/microadjust/engine/patches.py);
// this module refuses the same things again so that a compromised or buggy server, a proxy, or
// a hostile rule that slipped through can never reach the DOM. The limits and patterns mirror
// engine/patches.py one for one; protocol/vectors/patches/ proves they agree.

const NAME = /^[\w-]{1,64}$/; // class names, slot names: plain tokens, no quotes or selectors
const IDENT = /^[A-Za-z][\w-]{0,63}$/; // template ids and template text-slot names
const KEY = /^[\w.:/-]{1,128}$/; // data-ma-item keys, matched by attribute value only
const RULE = /^[\w.:-]{1,64}$/;
// aria-* and data-* carry no behaviour in any browser; data-ma-* is the markup contract the
// patcher itself relies on, so a patch may not rewrite it.
const ATTR = /^(aria-[a-z]+(-[a-z]+)*|data-(?!ma-)[a-z0-9]+(-[a-z0-9]+)*|title|hidden)$/;
// None of these properties takes a URL or changes how the page is laid out structurally
// (no position/display/width): an adjustment emphasises, it does not redesign.
const STYLE_PROPS =
  " background-color border-color border-radius border-style border-width box-shadow color font-size font-style font-weight letter-spacing line-height opacity order outline outline-color outline-offset outline-style outline-width text-decoration text-transform transform transition visibility ";
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
const int = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
const text = (v, max = 512) => str(v) && v.length <= max && !CONTROL.test(v) && !MARKUP.test(v);
const PATCH_FIELDS = " id rule target ops ttl priority cause exp ";
const oneOf = (list) => (v) => list.split(" ").includes(v);

// op -> its fields; `?` marks optional ones. Any other field refuses the op.
const OPS = {
  addClass: "class",
  removeClass: "class",
  setText: "text",
  setStyle: "prop value",
  setAttr: "name value",
  reorder: "keys",
  show: "",
  hide: "",
  template: "id slots? where?",
  notify: "kind text title?",
};
// field (or op + field where ops disagree) -> is the value acceptable?
const FIELDS = {
  class: (v) => str(v) && NAME.test(v),
  text,
  title: (v) => text(v, 128),
  prop: (v) => str(v) && NAME.test(v) && STYLE_PROPS.includes(" " + v + " "),
  setStylevalue: (v) => str(v) && STYLE_VALUE.test(v) && !STYLE_FUNC.test(v.toLowerCase().replace(/ /g, "")),
  name: (v) => str(v) && ATTR.test(v),
  setAttrvalue: (v) => v === !!v || text(v), // true/false for `hidden`
  keys: (k) => Array.isArray(k) && k.length <= 200 && k.every((x) => str(x) && KEY.test(x)) && new Set(k).size == k.length,
  id: (v) => str(v) && IDENT.test(v),
  slots: (s) => s && typeof s == "object" && !Array.isArray(s) && Object.keys(s).length <= 16 && Object.keys(s).every((n) => IDENT.test(n) && text(s[n])),
  where: oneOf("append prepend replace"),
  kind: oneOf("toast slidein badge"),
};

/** Returns "" when `op` is in the vocabulary, else the path of the first offending field. */
function checkOp(op, path) {
  if (!op || !Object.hasOwn(OPS, op.op)) return path + ".op";
  const fields = OPS[op.op].split(" ").filter(Boolean);
  for (const f of fields) {
    const name = f.replace("?", "");
    if (name in op ? !(FIELDS[op.op + name] || FIELDS[name])(op[name]) : f == name) return path + "." + name;
  }
  for (const f in op) if (f != "op" && !fields.includes(f) && !fields.includes(f + "?")) return path + "." + f;
  return "";
}

// §5: a target is exactly one of these.
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
  if (!patch || typeof patch != "object" || Array.isArray(patch)) return "patch";
  for (const f in patch) if (!PATCH_FIELDS.includes(" " + f + " ")) return f;
  const { id, ops } = patch;
  if (!str(id) || !id || id.length > 256 || CONTROL.test(id)) return "id";
  if (!str(patch.rule) || !RULE.test(patch.rule)) return "rule";
  if (!int(patch.ttl, 0, 864e5)) return "ttl";
  if (!int(patch.priority, -1000, 1000)) return "priority";
  if (!int(patch.cause, 0, Infinity)) return "cause";
  const e = patch.exp;
  if (e !== undefined && !(e && Object.keys(e).sort() + "" == "id,variant" && [e.id, e.variant].every((v) => str(v) && RULE.test(v)))) return "exp";
  if (!Array.isArray(ops) || !ops.length || ops.length > 16) return "ops";
  const [kind, ...more] = Object.keys(Object(patch.target));
  if (more.length || !Object.hasOwn(TARGETS, kind)) return "target";
  if (!str(patch.target[kind]) || !TARGETS[kind](patch.target[kind])) return "target." + kind;
  return ops.reduce((r, op, i) => r || checkOp(op, `ops[${i}]`), "");
}
