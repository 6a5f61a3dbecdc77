// Coarse pointer positions (proposed kind `pointer`) for attention heatmaps. The page is cut into
// COLS columns (5% of the page width each) and rows of ROW_PX CSS px; a sample every SAMPLE_MS
// (times the cost watch's rate) adds one to its cell, and the counts go out as one event every
// SEND_MS and on hide: a heatmap costs a few events a minute, not one per mouse move.
export const COLS = 20;
export const ROW_PX = 100;
export const SAMPLE_MS = 250;
export const SEND_MS = 10000;
const MAX_CELLS = 200;

export function pointer(ctx) {
  let cells = new Map(); // "cx,cy" -> count
  let next = 0;
  function send() {
    if (!cells.size) return;
    const out = [];
    cells.forEach((n, key) => out.length < MAX_CELLS && out.push(key.split(",").map(Number).concat(n)));
    cells = new Map();
    ctx.emit({ k: "pointer", cols: COLS, row: ROW_PX, cells: out });
  }
  ctx.on(document, "pointermove", (e) => {
    const t = e.timeStamp;
    if (t < next) return;
    next = t + SAMPLE_MS * ctx.rate();
    const w = document.documentElement.scrollWidth || innerWidth;
    const key = Math.min(COLS - 1, Math.floor((e.pageX / w) * COLS)) + "," + Math.floor(e.pageY / ROW_PX);
    cells.set(key, (cells.get(key) || 0) + 1);
  });
  const iv = setInterval(send, SEND_MS);
  ctx.onStop(() => clearInterval(iv));
  ctx.onHide(send);
}
