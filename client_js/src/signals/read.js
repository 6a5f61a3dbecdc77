// Reading inputs (proposed kind `read`): for each text block, the time it was at least half visible
// (visible.js), its length in words and the mean scroll speed while it was visible. The server
// tells skim from read: about 200-250 words a minute is reading; a block crossed at 2000 px/s was
// skimmed. Text blocks are [data-ma-read] elements and tracked slots/items of MIN_WORDS or more.
import { ref } from "../dom.js";
import { spans } from "../visible.js";

export const MIN_WORDS = 40;
export const MIN_MS = 500;

export function read(ctx) {
  let travelled = 0; // px scrolled on this page, summed over both directions
  let lastY = scrollY;
  const words = new WeakMap();
  const at = new Map(); // block -> travelled at span start
  ctx.on(window, "scroll", () => {
    travelled += Math.abs(scrollY - lastY);
    lastY = scrollY;
  });
  const count = (el) => {
    let n = words.get(el);
    if (n === undefined) {
      n = (el.textContent.match(/\S+/g) || []).length;
      words.set(el, n);
    }
    return n;
  };
  spans(
    ctx,
    "[data-ma-read],[data-ma-slot],[data-ma-item]",
    (el, ms) => {
      const px = travelled - (at.get(el) || 0);
      at.delete(el);
      const n = count(el);
      if (ms < MIN_MS || (n < MIN_WORDS && !el.hasAttribute("data-ma-read"))) return;
      ctx.emit({ k: "read", ...ref(el), ms, words: n, speed: Math.round((px * 1000) / ms) });
    },
    (el) => at.set(el, travelled),
  );
}
