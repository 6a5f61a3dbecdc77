// Hover (PROTOCOL §3.1 `hover`): `intent` once the pointer has rested on a tracked element for the
// threshold (data-hover-intent, 2 s by default: long enough that crossing a product on the way to
// somewhere else never counts), then `end` with the total time when it leaves. Passes shorter than
// MIN_END_MS send nothing at all: they are pass-through movement, not interest.
import { tracked, ref, now } from "../dom.js";

export const MIN_END_MS = 500; // the server ignores shorter ends too (HOVER_END_MIN_MS)

export function hover(ctx) {
  let cur = null;
  let since = 0;
  let timer = 0;
  let fired = false;

  function leave() {
    if (!cur) return;
    clearTimeout(timer);
    const dur = Math.round(now() - since);
    if (fired || dur >= MIN_END_MS) ctx.emit({ k: "hover", ...ref(cur), dur, phase: "end" });
    cur = null;
  }

  ctx.on(document, "pointerover", (e) => {
    if (e.pointerType === "touch") return; // a tap is a click, not a hover
    const el = tracked(e.target);
    if (el === cur) return; // moving inside the same element (or its children) is resting on it
    leave();
    if (!el) return;
    cur = el;
    since = now();
    fired = false;
    timer = setTimeout(() => {
      fired = true;
      ctx.emit({ k: "hover", ...ref(el), dur: Math.round(now() - since), phase: "intent" }, true);
    }, ctx.cfg.hoverIntent);
  });
  // Leaving the window: pointerout with no element to go to.
  ctx.on(document, "pointerout", (e) => e.relatedTarget || leave());
  ctx.onHide(leave);
}
