// DOM writes for the ops of the vocabulary (PROTOCOL §5.1) that every page may need, each
// returning its undo record; `template` and `notify` live in the lazily loaded extra.js.
//
// An undo record is {holds, undo, drop?}: `holds()` tells whether our change is still in the DOM
// (the re-render watcher in index.js asks it), `undo()` puts back exactly what the op found, and
// `drop()`, for ops that insert nodes, removes just those (always safe, even after the page
// re-rendered around them). Ops only ever use textContent, classList, CSSOM style, whitelisted
// attributes and node moves/clones: no HTML parsing, hence no Trusted Types sink and nothing a
// strict CSP refuses.

const tokens = (s) => (s || "").split(/\s+/).filter(Boolean).sort() + "";
// The class and style attributes as the page wrote them, before any patch touched the element,
// so that the last of several patches to be reverted can give back the exact original.
const original = new WeakMap();
const first = (el) => original.get(el) || original.set(el, [el.getAttribute("class"), el.hasAttribute("style")]).get(el);

function klass(op, el) {
  const add = op.op == "addClass";
  const had = el.classList.contains(op.class);
  const [attr] = first(el);
  el.classList.toggle(op.class, add);
  return {
    holds: () => el.classList.contains(op.class) == add,
    undo() {
      if (had == add) return;
      el.classList.toggle(op.class, had);
      // classList rewrites the attribute ("a  b" -> "a b"): give back the page's exact string
      // when the set of classes is the original one again.
      if (tokens(el.getAttribute("class")) == tokens(attr)) attribute(el, "class", attr);
    },
  };
}

// Sets (or, for null, removes) an attribute and returns the undo record of that.
function attribute(el, name, value) {
  const prev = el.getAttribute(name);
  value == null ? el.removeAttribute(name) : el.setAttribute(name, value);
  return {
    holds: () => el.getAttribute(name) == value,
    undo: () => attribute(el, name, prev),
  };
}

/** Puts `nodes` first among el's children in that order, moving only nodes that are out of place. */
export function place(el, nodes) {
  nodes.forEach((n, i) => el.childNodes[i] != n && el.insertBefore(n, el.childNodes[i] || null));
}

/** op name -> (op, el) => undo record. */
export const OPS = {
  addClass: klass,
  removeClass: klass,
  setText(op, el) {
    const prev = [...el.childNodes];
    el.textContent = op.text;
    return { holds: () => el.textContent == op.text, undo: () => el.replaceChildren(...prev) };
  },
  setStyle({ prop, value }, el) {
    // CSSOM writes are allowed under a strict style-src; setAttribute("style") is not, so undo
    // restores the declaration and only removes the attribute when we created it.
    const s = el.style;
    const prev = s.getPropertyValue(prop);
    const priority = s.getPropertyPriority(prop);
    const created = !first(el)[1];
    s.setProperty(prop, value);
    const got = s.getPropertyValue(prop);
    return {
      holds: () => s.getPropertyValue(prop) == got,
      undo() {
        s.setProperty(prop, prev, priority);
        if (created && !s.length) el.removeAttribute("style");
      },
    };
  },
  setAttr: ({ name, value }, el) => attribute(el, name, value === false ? null : value === true ? "" : value),
  show: (op, el) => attribute(el, "hidden", null),
  hide: (op, el) => attribute(el, "hidden", ""),
  reorder({ keys }, el) {
    const prev = [...el.childNodes];
    const key = (n) => n.getAttribute("data-ma-item");
    const keyed = () => [...el.children].filter((n) => key(n) != null);
    const rank = (n) => (keys.indexOf(key(n)) + keys.length + 1) % (keys.length + 1);
    const items = keyed();
    // Stable sort: listed items in `keys` order, unlisted ones after them in page order; the
    // items take the positions items held before, so headings or separators stay put.
    const sorted = items.slice().sort((a, b) => rank(a) - rank(b));
    let i = 0;
    place(el, prev.map((n) => (items.includes(n) ? sorted[i++] : n)));
    const order = () => keyed().map(key) + "";
    const want = order();
    return { holds: () => order() == want, undo: () => place(el, prev.filter((n) => n.parentNode == el)) };
  },
};
