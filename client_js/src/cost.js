// Cost watch: the tracker's own main-thread time, from Long Animation Frames script attribution
// (Chromium 123+; elsewhere the rate stays 1). Over BUDGET_MS of our script time in a WINDOW_MS
// window the sampling intervals (pointer, scroll) double, up to MAX_RATE; under a quarter of the
// budget they halve back. 20 ms in 10 s is 0.2% of the main thread, well inside the 2% goal.
export const WINDOW_MS = 10000;
export const BUDGET_MS = 20;
export const MAX_RATE = 8;

export function costWatch(src) {
  let rate = 1;
  let spent = 0;
  const types = typeof PerformanceObserver !== "undefined" && PerformanceObserver.supportedEntryTypes;
  if (!src || !types || types.indexOf("long-animation-frame") < 0) return { rate: () => rate, stop() {} };
  const po = new PerformanceObserver((list) => {
    for (const f of list.getEntries()) for (const s of f.scripts || []) if (s.sourceURL === src) spent += s.duration;
  });
  po.observe({ type: "long-animation-frame" });
  const iv = setInterval(() => {
    if (spent > BUDGET_MS) rate = Math.min(MAX_RATE, rate * 2);
    else if (spent < BUDGET_MS / 4 && rate > 1) rate /= 2;
    spent = 0;
  }, WINDOW_MS);
  return {
    rate: () => rate,
    stop() {
      po.disconnect();
      clearInterval(iv);
    },
  };
}
