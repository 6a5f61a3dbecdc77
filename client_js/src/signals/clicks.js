// Clicks (PROTOCOL §3.1 `click`): the element, rage clicks (RAGE_N clicks within RAGE_MS inside
// RAGE_PX: the frustrated "why does nothing happen" burst) and dead clicks (no DOM change, scroll,
// selection or navigation within DEAD_MS). To know whether a click was dead it is held at most
// DEAD_MS; the page's reaction, which usually comes within a frame, releases it at once.
// Dead-click detection is in the full build only (MA_DEAD): no shipped rule reads it, and the
// default bundle is at its size budget; the default build sends clicks (and rage) at once.
import { tracked, ref, now } from "../dom.js";

export const RAGE_N = 3;
export const RAGE_MS = 800;
export const RAGE_PX = 30;
export const DEAD_MS = 1000;

export function clicks(ctx) {
  let recent = []; // [t, x, y] of the last clicks, for rage detection
  let held = null;
  let timer = 0;
  let mo = null;

  function release(dead) {
    if (!held) return;
    const ev = held;
    held = null;
    clearTimeout(timer);
    if (mo) mo.disconnect();
    if (dead) ev.dead = true;
    ctx.emit(ev, true);
  }
  const reacted = () => release(false);

  ctx.on(
    document,
    "click",
    (e) => {
      release(false); // a second click before the first's verdict: the first is not judged dead
      const t = now();
      const el = e.target && e.target.nodeType === 1 ? e.target : null;
      if (!el) return;
      const ev = { k: "click", ...ref(tracked(el) || el) };
      recent = recent.filter((c) => t - c[0] < RAGE_MS && Math.hypot(c[1] - e.clientX, c[2] - e.clientY) < RAGE_PX);
      recent.push([t, e.clientX, e.clientY]);
      if (recent.length >= RAGE_N) {
        ev.rage = true;
        recent = [];
      }
      if (!MA_DEAD) return ctx.emit(ev, true);
      held = ev;
      timer = setTimeout(() => release(true), DEAD_MS);
      mo = mo || new MutationObserver(reacted);
      mo.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    },
    true,
  );
  if (!MA_DEAD) return;
  ctx.on(window, "scroll", reacted);
  ctx.on(document, "selectionchange", () => {
    const s = getSelection();
    if (s && !s.isCollapsed) reacted();
  });
  ctx.onHide(reacted); // navigation is a reaction, and the click must go out before the page does
}
