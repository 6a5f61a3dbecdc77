// The patcher's lazily loaded chunk (dist/microadjust-extra.js): the `template` op, the
// built-in `notify` components (toast, slide-in, badge) and the patcher's stylesheet (PROTOCOL
// §5.1). They are the largest parts and the rarest, so the default tracker does not carry them:
// the patcher imports this module the first time a patch needs one of them, or when the visitor
// prefers reduced motion (index.js, `loadExtra`). Every patch has passed the whole vocabulary
// check (vocabulary.js) before it gets here.
//
// Same rules as ops.js: textContent, classList, whitelisted attributes and node clones only, no
// HTML parsing, so no Trusted Types sink.
//
// The stylesheet is installed as a constructable stylesheet (document.adoptedStyleSheets): a
// page with a strict `style-src` (no 'unsafe-inline') forbids <style> elements with text, but
// not stylesheets built through the CSSOM. Browsers without constructable stylesheets get an
// empty <style> filled rule by rule with insertRule, also CSSOM.
//
// Layout shift: toast and slide-in are fixed-position overlays and move only with `translate`;
// a badge is absolutely positioned at its static position (the target's top-left corner), so it
// takes no space in the flow. None of them moves a pixel of the page.

import { place } from "./ops.js";

const CSS = [
  ".ma-r{position:fixed;z-index:2147483000}",
  ".ma-n{position:fixed;bottom:1em;right:1em;max-width:20em;padding:.7em 2.2em .7em 1em;border-radius:6px;background:#222;color:#fff;font:14px system-ui;animation:ma-in .3s}",
  ".ma-toast{right:auto;left:50%;transform:translateX(-50%)}",
  ".ma-n strong{display:block}",
  ".ma-x{position:absolute;top:0;right:0;padding:.4em .6em;border:0;background:none;color:inherit;font:inherit;cursor:pointer}",
  ".ma-badge{position:absolute;padding:0 .4em;border-radius:9px;background:#b91c1c;color:#fff;font:700 12px system-ui;transform:translate(-25%,-50%);animation:ma-in .3s}",
  "@keyframes ma-in{from{opacity:0;translate:0 .5em}}",
  // Reduced motion: no entrance animation, and no transition on the elements patches emphasise
  // (the page's own CSS usually animates emphasis classes on slots and items).
  "@media (prefers-reduced-motion:reduce){.ma-n,.ma-badge,[data-ma-slot],[data-ma-item]{animation:none!important;transition:none!important}}",
];

const installed = new WeakSet();

/** Adds the stylesheet to `root` (a Document or ShadowRoot) once. */
export function install(root, win) {
  if (installed.has(root)) return;
  installed.add(root);
  try {
    const sheet = new win.CSSStyleSheet();
    sheet.replaceSync(CSS.join(""));
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } catch {
    const doc = root.ownerDocument || root;
    const style = doc.createElement("style");
    (doc.head || root).append(style);
    for (const rule of CSS)
      try {
        style.sheet.insertRule(rule, style.sheet.cssRules.length);
      } catch {
        /* an engine that cannot parse one rule still gets the others */
      }
  }
}

// A page template is the page's own markup, but a patch should never be the way a script or a
// frame gets into the page.
const UNSAFE_TEMPLATE = "script,iframe,object,embed,frame,link,meta,base";

function template(op, el, ctx) {
  const t = ctx.root.getElementById(op.id);
  if (!t || t.localName != "template") throw "template";
  const frag = t.content.cloneNode(true);
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

/**
 * Toast and slide-in go into one shared polite live region (role=status) so screen readers
 * announce them; the region is created once and kept, because a region inserted together with
 * its content is often not announced. `ctx.dismiss` is called when the visitor closes one.
 */
function notify(op, el, ctx) {
  const { doc } = ctx;
  const parent = ctx.root.body || ctx.root;
  const make = (tag, cls, text) => {
    const n = doc.createElement(tag);
    n.className = cls;
    if (text != null) n.textContent = text;
    return n;
  };
  let node;
  if (op.kind == "badge") {
    node = make("span", "ma-badge", op.text);
    el.prepend(node);
  } else {
    let region = parent.querySelector(":scope>.ma-r");
    if (!region) {
      region = make("div", "ma-r");
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      parent.append(region);
    }
    node = make("div", "ma-n ma-" + op.kind);
    if (op.title) node.append(make("strong", "", op.title));
    const close = make("button", "ma-x", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", ctx.dismiss);
    node.append(op.text, close);
    region.append(node);
  }
  const undo = () => node.remove();
  return { holds: () => node.isConnected, undo, drop: undo };
}

/** Applies a `template` or `notify` op (see ops.js for the undo record); throws a failure reason. */
export const write = (op, el, ctx) => (op.op == "template" ? template : notify)(op, el, ctx);
