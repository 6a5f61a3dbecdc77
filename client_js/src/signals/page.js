// Page views (PROTOCOL §3.1 `view`) with the page's tracked items `{key, tags?, slot?}` so the
// server can rank them; SPA route changes (pushState, replaceState, popstate, hashchange) as views
// once per real URL change; back/forward cache restores as views; and engaged time (proposed kind
// `engage`): time the tab was visible, focused and used (input within IDLE_MS), sent on hide.
import { tags } from "../dom.js";

export const IDLE_MS = 15000;
export const ROUTE_SETTLE_MS = 100; // a router's push + replace pair is one change; lets it render

export function pageItems() {
  const out = [];
  const els = document.querySelectorAll("[data-ma-item]");
  for (let i = 0; i < els.length && out.length < 200; i++) {
    const el = els[i];
    const it = { key: el.getAttribute("data-ma-item") };
    const t = tags(el);
    if (t) it.tags = t;
    const slot = el.parentElement && el.parentElement.closest("[data-ma-slot]");
    if (slot) it.slot = slot.getAttribute("data-ma-slot");
    out.push(it);
  }
  return out;
}

const here = () => (location.pathname + location.search + location.hash).slice(0, 2048);

export function page(ctx) {
  let url = here();
  let timer = 0;
  let engaged = 0;
  let lastAct = performance.now();

  function view(via) {
    const ev = { k: "view", url: here(), title: document.title.slice(0, 256), items: pageItems() };
    if (via) ev.via = via;
    ctx.emit(ev);
  }

  function changed(via) {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (here() === url) return; // replaceState of the same URL, or a push undone: no change
      url = here();
      ctx.scan(); // the new route's elements for dwell, items and reading
      view(via);
    }, ROUTE_SETTLE_MS);
  }

  for (const m of ["pushState", "replaceState"]) {
    const orig = history[m];
    const via = m === "pushState" ? "push" : "replace";
    history[m] = function () {
      const r = orig.apply(this, arguments);
      changed(via);
      return r;
    };
    ctx.onStop(() => (history[m] = orig));
  }
  ctx.on(window, "popstate", () => changed("pop"));
  ctx.on(window, "hashchange", () => changed("hash"));
  ctx.on(window, "pageshow", (e) => e.persisted && view("bfcache"));

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

  view();
}
