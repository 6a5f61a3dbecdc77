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
  // scrollY + innerHeight stays positive even in an overscroll bounce: no lower clamp needed.
  return h > 0 ? Math.min(100, Math.round(((scrollY + innerHeight) / h) * 100)) : 100;
}

export function scroll(ctx) {
  let lastY = scrollY;
  let lastT = 0; // 0 until the page's first sample: nothing is timed against page start
  let lone = 0; // the first sample's speed against the previous gesture, for a gesture of one step
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
    // A gesture of a single step (a wheel without smooth scrolling: one scroll event per notch)
    // has no speed of its own; notches in quick succession are timed against each other.
    // `dir` stays undefined until the page moved: JSON leaves the field out then.
    ctx.emit({ k: "scroll", depth: max, speed: Math.round(speed || lone), dir });
    speed = lone = 0;
  }

  function sample(t) {
    const y = scrollY;
    const dt = t - lastT;
    // A gesture's speed comes from its own samples: its first sample, timed against the previous
    // gesture, would read a fast flick that follows a pause as slow. That timing is kept aside
    // (`lone`) for a gesture that turns out to have one step. A pause longer than a gesture gap
    // times nothing (no scrollend where the fallback timer was late).
    if (lastT && dt > 0 && dt < 4 * GESTURE_GAP_MS) {
      const v = (Math.abs(y - lastY) * 1000) / dt;
      if (!speed && !lone) lone = v;
      else speed = speed ? ALPHA * v + (1 - ALPHA) * speed : v;
    }
    if (y !== lastY) dir = y > lastY ? "down" : "up";
    lastY = y;
    lastT = t;
    max = Math.max(max, depth());
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
  });
  if (hasScrollEnd) ctx.on(window, "scrollend", end);
  ctx.onHide(end);
}
