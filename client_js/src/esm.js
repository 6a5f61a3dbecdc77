// Entry of the ES module build (dist/microadjust.esm.js). `init(options)` takes the script tag's
// attributes as a camel-cased object ({site, endpoint, hoverIntent, flushMs, consent, respectGpc});
// a module has no currentScript, so a page that loads it with a `script[data-site]` tag is started
// from that tag, as the script-tag build would be. The patcher chunk is loaded from next to this
// module (import.meta.url), wherever the page took it from.
import { init as start, replay } from "./tracker.js";

const loadPatcher = () => import(new URL("microadjust-patcher.js", import.meta.url).href);

export function init(options, scriptSrc) {
  return start((n) => {
    const v = (options || {})[n.replace(/-(\w)/g, (_, c) => c.toUpperCase())];
    return v == null ? null : String(v);
  }, scriptSrc, loadPatcher);
}
export { replay };

const tag = typeof document !== "undefined" && document.querySelector("script[data-site]");
if (tag && !(window.microadjust && window.microadjust.__ma)) {
  const stub = window.microadjust;
  replay(stub, (window.microadjust = start((n) => tag.getAttribute("data-" + n), tag.src, loadPatcher)));
}
