// Built-in notification components for the `notify` op (PROTOCOL §5.1): toast, slide-in and
// badge, plus the patcher's own tiny stylesheet.
//
// The stylesheet is installed as a constructable stylesheet (document.adoptedStyleSheets): a
// page with a strict `style-src` (no 'unsafe-inline') forbids <style> elements with text, but
// not stylesheets built through the CSSOM. Browsers without constructable stylesheets get an
// empty <style> filled rule by rule with insertRule, also CSSOM.
//
// Layout shift: toast and slide-in are fixed-position overlays and move only with `translate`;
// a badge is absolutely positioned at its static position (the target's top-left corner), so it
// takes no space in the flow. None of them moves a pixel of the page.

const RULES = [
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
export function installStyles(root, win) {
  if (installed.has(root)) return;
  installed.add(root);
  try {
    const sheet = new win.CSSStyleSheet();
    sheet.replaceSync(RULES.join(""));
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } catch {
    const doc = root.ownerDocument || root;
    const style = doc.createElement("style");
    (doc.head || root).append(style);
    for (const rule of RULES)
      try {
        style.sheet.insertRule(rule, style.sheet.cssRules.length);
      } catch {
        /* an engine that cannot parse one rule still gets the others */
      }
  }
}

/**
 * Renders a notify op and returns its undo record (see ops.js). Toast and slide-in go into one
 * shared polite live region (role=status) so screen readers announce them; the region is
 * created once and kept, because a region inserted together with its content is often not
 * announced. `dismiss` is called when the visitor closes the component.
 */
export function notify(op, el, doc, parent, dismiss) {
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
    close.addEventListener("click", dismiss);
    node.append(op.text, close);
    region.append(node);
  }
  const undo = () => node.remove();
  return { holds: () => node.isConnected, undo, drop: undo };
}
