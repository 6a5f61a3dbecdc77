// Visible spans of elements: an element's span runs while it is at least half visible (dom.half)
// AND the tab is visible AND the window has focus; it ends when any of these stops. Dwell and
// reading both measure spans, so one piece of code decides what "seen" means for both.
import { half, now, THRESHOLDS } from "./dom.js";

export function spans(ctx, selector, onEnd, onStart = () => {}) {
  const seen = new Set(); // elements at least half visible right now
  const open = new Map(); // element -> span start (performance.now())
  const active = () => !document.hidden && document.hasFocus();
  const begin = (el) => {
    if (!open.has(el)) {
      open.set(el, now());
      onStart(el);
    }
  };
  const end = (el) => {
    const t0 = open.get(el);
    if (t0 === undefined) return;
    open.delete(el);
    onEnd(el, Math.round(now() - t0));
  };
  const io = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        if (half(e)) {
          seen.add(e.target);
          if (active()) begin(e.target);
        } else {
          seen.delete(e.target);
          end(e.target);
        }
      }
    },
    { threshold: THRESHOLDS },
  );
  const pause = () => open.forEach((_, el) => end(el));
  const resume = () => active() && seen.forEach(begin);
  ctx.on(document, "visibilitychange", () => (document.hidden ? pause() : resume()));
  ctx.on(window, "blur", pause);
  ctx.on(window, "focus", resume);
  ctx.onHide(pause);
  const scan = () => document.querySelectorAll(selector).forEach((el) => io.observe(el));
  scan();
  ctx.onScan(scan);
  ctx.onStop(() => io.disconnect());
  return { end, open };
}
