// Dwell (PROTOCOL §3.1 `dwell`): one event per continuous span in which a tracked element was at
// least half visible while the tab was visible and focused (visible.js), sent when the span ends.
// A span that reaches SPLIT_MS is reported at that moment and goes on as a new span, once per
// element and page, so a rule like "dwelled 5 s on a product" fires while the visitor still looks.
import { TRACKED, ref } from "../dom.js";
import { spans } from "../visible.js";

export const SPLIT_MS = 5000;
export const MIN_MS = 300; // shorter spans are scrolling past, not dwelling

export function dwell(ctx) {
  const split = new WeakSet();
  const timers = new Map();
  const v = spans(
    ctx,
    TRACKED,
    (el, ms) => {
      clearTimeout(timers.get(el));
      timers.delete(el);
      if (ms >= MIN_MS) ctx.emit({ k: "dwell", ...ref(el), ms });
    },
    (el) => {
      if (split.has(el)) return;
      timers.set(
        el,
        setTimeout(() => {
          split.add(el);
          v.end(el);
          if (!document.hidden) v.open.set(el, performance.now());
        }, SPLIT_MS),
      );
    },
  );
}
