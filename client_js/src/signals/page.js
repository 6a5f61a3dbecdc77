// Page views (PROTOCOL §3.1 `view`) with the page's tracked items `{key, tags?, slot?}` so the
// server can rank them; SPA route changes (pushState, replaceState, popstate, hashchange) as views
// with `via`, once per real URL change; back/forward cache restores as views with via "bfcache".
// `engage` (full build): time the tab was visible and used (input within IDLE_MS), sent on hide.
import { tags } from "../dom.js";

export const IDLE_MS = 15000;
export const ROUTE_SETTLE_MS = 100; // a router's push + replace pair is one change; lets it render

export function pageItems() {
  const out = [];
  for (const el of document.querySelectorAll("[data-ma-item]")) {
    const slot = el.parentElement && el.parentElement.closest("[data-ma-slot]");
    const key = el.getAttribute("data-ma-item").slice(0, 128); // as dom.js ref(); "" is no item
    if (key && out.push({ key, tags: tags(el), slot: slot ? slot.getAttribute("data-ma-slot") : undefined }) >= 200) break;
  }
  return out;
}

const here = () => (location.pathname + location.search + location.hash).slice(0, 2048);

export function page(ctx) {
  let url = here();
  let timer = 0;
  const view = (via) => ctx.emit({ k: "view", url: here(), title: document.title.slice(0, 256), items: pageItems(), via });
  // The URL is compared after the route settled: a replaceState to the same URL, or a push that
  // was undone, is no change; several calls in a row are one.
  const changed = (via) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (here() === url) return;
      url = here();
      ctx.scan(); // the new route's elements for dwell, items and reading
      view(via);
    }, ROUTE_SETTLE_MS);
  };
  for (const m of ["pushState", "replaceState"]) {
    const orig = history[m];
    history[m] = function () {
      const r = orig.apply(this, arguments);
      changed(m === "pushState" ? "push" : "replace");
      return r;
    };
    ctx.onStop(() => (history[m] = orig));
  }
  ctx.on(window, "popstate", () => changed("pop"));
  ctx.on(window, "hashchange", () => changed("hash"));
  ctx.on(window, "pageshow", (e) => e.persisted && view("bfcache"));
  view();
}

export function engage(ctx) {
  let engaged = 0;
  let lastAct = performance.now();
  const act = () => {
    const t = performance.now();
    if (t - lastAct < IDLE_MS && !document.hidden) engaged += t - lastAct;
    lastAct = t;
  };
  for (const type of ["pointermove", "scroll", "keydown", "click", "touchstart"]) ctx.on(window, type, act);
  ctx.onHide(() => {
    act();
    if (engaged >= 1000) ctx.emit({ k: "engage", ms: Math.round(engaged) });
    engaged = 0;
  });
}
