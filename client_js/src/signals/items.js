// Item views: a data-ma-item counts as viewed once it has been at least half visible for VIEW_MS
// on a page. The last LAST_N viewed items, with timestamps, are kept in first-party localStorage
// and offered to the page by `microadjust.state().items` (a "recently viewed" strip needs no
// server). The server learns the same from the dwell, hover and click events.
import { load, save, LOCAL } from "../store.js";
import { spans } from "../visible.js";

export const VIEW_MS = 1000;
export const LAST_N = 5;
export const ITEMS_KEY = "ma_items";

export function items(ctx) {
  let last = load(LOCAL, ITEMS_KEY) || [];
  const viewed = new Set(); // keys viewed on this page: once per page
  spans(ctx, "[data-ma-item]", (el, ms) => {
    const key = el.getAttribute("data-ma-item");
    if (ms < VIEW_MS || viewed.has(key)) return;
    viewed.add(key);
    last = [{ item: key, ts: Date.now() }].concat(last.filter((x) => x.item !== key)).slice(0, LAST_N);
    save(LOCAL, ITEMS_KEY, last);
  });
  ctx.onScan(() => viewed.clear());
  return { last: () => last.slice() };
}
