// Scroll (PROTOCOL §3.1 `scroll`): one event per scroll gesture, at `scrollend` (or GESTURE_GAP_MS
// without scroll events where scrollend does not exist): the max depth % reached so far, the
// gesture's smoothed speed in px/s and its direction, so the server sees speed and direction changes
// without an event per frame. Samples are taken at most every SAMPLE_MS x the cost watch's rate.
import { now } from "../dom.js";

export const SAMPLE_MS = 50;
export const GESTURE_GAP_MS = 150;
const ALPHA = 0.3; // EWMA weight of a new sample: follows a change of pace within ~3 samples

export function depth() {
  const h = document.documentElement.scrollHeight;
  return h > 0 ? Math.min(100, Math.max(0, Math.round(((scrollY + innerHeight) / h) * 100))) : 100;
}

export function scroll(ctx) {
  let lastY = scrollY;
  let lastT = 0; // 0 until a gesture's first sample: no speed from that one
  let nextSample = 0;
  let speed = 0;
  let dir;
  let max = depth();
  let moved = false;
  let gap = 0;
  const hasScrollEnd = "onscrollend" in window;

  function end() {
    if (!moved) return;
    sample(now());
    moved = false;
    max = Math.max(max, depth());
    const ev = { k: "scroll", depth: max, speed: Math.round(speed) };
    if (dir) ev.dir = dir;
    ctx.emit(ev);
    speed = lastT = 0;
  }

  function sample(t) {
    const y = scrollY;
    const dt = t - lastT;
    // The first sample of a gesture (lastT 0) has no interval: timed against page start or the
    // previous gesture it would read a fast flick as slow. A pause longer than a gesture gap
    // starts a new gesture too (no scrollend where the fallback timer was late).
    if (lastT && dt > 0 && dt < 4 * GESTURE_GAP_MS) {
      const v = (Math.abs(y - lastY) * 1000) / dt;
      speed = speed ? ALPHA * v + (1 - ALPHA) * speed : v;
    }
    if (y !== lastY) dir = y > lastY ? "down" : "up";
    lastY = y;
    lastT = t;
  }

  ctx.on(window, "scroll", () => {
    const t = now();
    moved = true;
    if (!hasScrollEnd) {
      clearTimeout(gap);
      gap = setTimeout(end, GESTURE_GAP_MS);
    }
    if (t < nextSample) return;
    nextSample = t + SAMPLE_MS * ctx.rate();
    sample(t);
    max = Math.max(max, depth());
  });
  if (hasScrollEnd) ctx.on(window, "scrollend", end);
  ctx.onHide(end);
}
