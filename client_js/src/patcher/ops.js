// DOM writes for each op of the vocabulary (PROTOCOL §5.1), each returning its undo record.
//
// An undo record is {holds, undo, drop?}: `holds()` tells whether our change is still in the DOM
// (the re-render watcher in index.js asks it), `undo()` puts back exactly what the op found, and
// `drop()`, for ops that insert nodes, removes just those (always safe, even after the page
// re-rendered around them). Ops only ever
// use textContent, classList, CSSOM style, whitelisted attributes and node moves/clones: no
// HTML parsing, hence no Trusted Types sink and nothing a strict CSP refuses.

import { notify } from "./notify.js";

const tokens = (s) => (s || "").split(/\s+/).filter(Boolean).sort() + "";
// The class and style attributes as the page wrote them, before any patch touched the element,
// so that the last of several patches to be reverted can give back the exact original.
const original = new WeakMap();
const first = (el) => original.get(el) || original.set(el, [el.getAttribute("class"), el.hasAttribute("style")]).get(el);

function klass(el, op) {
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
      if (tokens(el.getAttribute("class")) == tokens(attr)) attr == null ? el.removeAttribute("class") : el.setAttribute("class", attr);
    },
  };
}

// `value == null` removes the attribute.
function attribute(el, name, value) {
  const prev = el.getAttribute(name);
  value == null ? el.removeAttribute(name) : el.setAttribute(name, value);
  return {
    holds: () => el.getAttribute(name) == value,
    undo: () => (prev == null ? el.removeAttribute(name) : el.setAttribute(name, prev)),
  };
}

// Puts `nodes` first among el's children in that order, moving only nodes that are out of place.
function place(el, nodes) {
  nodes.forEach((n, i) => el.childNodes[i] != n && el.insertBefore(n, el.childNodes[i] || null));
}

const UNSAFE_TEMPLATE = "script,iframe,object,embed,frame,link,meta,base";

/** Applies `op` to `el` (null for page-level notify ops); throws a failure reason string. */
export function write(op, el, ctx) {
  switch (op.op) {
    case "addClass":
    case "removeClass":
      return klass(el, op);
    case "setText": {
      const prev = [...el.childNodes];
      el.textContent = op.text;
      return { holds: () => el.textContent == op.text, undo: () => el.replaceChildren(...prev) };
    }
    case "setStyle": {
      // CSSOM writes are allowed under a strict style-src; setAttribute("style") is not, so undo
      // restores the declaration and only removes the attribute when we created it.
      const s = el.style;
      const { prop } = op;
      const prev = s.getPropertyValue(prop);
      const priority = s.getPropertyPriority(prop);
      const created = !first(el)[1];
      s.setProperty(prop, op.value);
      const got = s.getPropertyValue(prop);
      return {
        holds: () => s.getPropertyValue(prop) == got,
        undo() {
          s.setProperty(prop, prev, priority);
          if (created && !s.length) el.removeAttribute("style");
        },
      };
    }
    case "setAttr":
      return attribute(el, op.name, op.value === false ? null : op.value === true ? "" : op.value);
    case "show":
    case "hide":
      return attribute(el, "hidden", op.op == "hide" ? "" : null);
    case "reorder": {
      const prev = [...el.childNodes];
      const keyed = () => [...el.children].filter((n) => n.hasAttribute("data-ma-item"));
      const key = (n) => n.getAttribute("data-ma-item");
      const rank = (n) => (op.keys.indexOf(key(n)) + op.keys.length + 1) % (op.keys.length + 1);
      const items = keyed();
      // Stable sort: listed items in `keys` order, unlisted ones after them in page order; the
      // items take the positions items held before, so headings or separators stay put.
      const sorted = items.slice().sort((a, b) => rank(a) - rank(b));
      let i = 0;
      place(el, prev.map((n) => (items.includes(n) ? sorted[i++] : n)));
      const order = () => keyed().map(key) + "";
      const want = order();
      return { holds: () => order() == want, undo: () => place(el, prev.filter((n) => n.parentNode == el)) };
    }
    case "template": {
      const t = ctx.root.getElementById(op.id);
      if (!t || t.localName != "template") throw "template";
      const frag = t.content.cloneNode(true);
      // The template is the page's own markup, but a patch should never be the way a script
      // or a frame gets into the page.
      if (frag.querySelector(UNSAFE_TEMPLATE)) throw "template";
      const slots = op.slots || {};
      for (const n of frag.querySelectorAll("[data-ma-text]")) {
        const name = n.getAttribute("data-ma-text");
        if (Object.hasOwn(slots, name)) n.textContent = slots[name];
      }
      const nodes = [...frag.childNodes];
      const prev = op.where == "replace" && [...el.childNodes];
      op.where == "prepend" ? el.prepend(frag) : prev ? el.replaceChildren(frag) : el.append(frag);
      const drop = () => nodes.forEach((n) => n.parentNode == el && n.remove());
      return {
        drop,
        holds: () => nodes.every((n) => n.parentNode == el),
        undo() {
          drop();
          if (prev) place(el, prev);
        },
      };
    }
    case "notify":
      return notify(op, el, ctx.doc, ctx.root.body || ctx.root, ctx.dismiss);
  }
}
