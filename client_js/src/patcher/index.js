// The patcher: applies the server's patches (PROTOCOL §5) to the page, or hands them to a
// subscribe() callback, and reports each outcome (§5.2). docs/PATCHES.md is the user's guide.
//
// - Every patch is checked against the closed vocabulary first (vocabulary.js); anything else
//   is `refused`, never partly applied.
// - All DOM writes requested during a tick run in ONE requestAnimationFrame; `ms` is measured
//   from the causing event (or receipt) to a task queued from that frame's callback, which runs
//   once the frame's rendering (style, layout, paint) is done: after the write was painted.
// - Each applied patch keeps an undo record per (element, op), so revert puts back exactly what
//   was there; a patch id is idempotent, and new content under a known id replaces the old.
// - A MutationObserver notices when the page (a React/Vue re-render) undoes an effect and
//   re-applies it; the patcher's own writes are discarded with takeRecords() right after they
//   are made, so it never reacts to itself. More than `maxFights` re-applies of one patch
//   within FIGHT_WINDOW ms means the page and the patch disagree: revert, report `failed: loop`.
// - `template`, `notify` and the stylesheet are in extra.js, which `loadExtra()` provides the
//   first time a patch needs it: a patch with one of those ops, or any patch for a visitor who
//   prefers reduced motion (the sheet stops the transitions of patched slots and items). The
//   shipped chunk (chunk.js, dist/microadjust-patcher.js, itself loaded lazily by ../lazy.js)
//   bundles it; a build that keeps it apart fails those patches with `extra_unavailable` when
//   it cannot be loaded.

import { checkPatch } from "./vocabulary.js";
import { OPS } from "./ops.js";

/** Re-applies of one patch within this many ms that count towards `maxFights`. */
export const FIGHT_WINDOW = 10000;

// A patch may never write into these (setText into an empty <script> would run it; into a
// <style> it would inject CSS), whatever selector a rule uses.
const UNSAFE_TARGET = "head,script,style,template,noscript,iframe,object,embed,svg script,svg style";
const OBSERVE = { subtree: true, childList: true, attributes: true, characterData: true };
const pageLevel = (op) => op.op == "notify" && op.kind != "badge";
const lazy = (op) => !OPS[op.op]; // written by the extra chunk

/**
 * A `loadExtra` that imports microadjust-extra.js from next to `src` (the tracker's own URL).
 * import() is governed by CSP `script-src` ('self' allows it: same origin as the tracker) and
 * is no Trusted Types sink, unlike a <script src> written from script; cross-origin, the
 * server must answer it with CORS headers, as for any module script.
 */
export const extraNextTo = (src) => () => import(new URL("microadjust-extra.js", src).href);

export function createPatcher({ report, root = document, win = window, now = () => performance.now(), maxFights = 5, loadExtra } = {}) {
  const doc = root.ownerDocument || root;
  // By default the chunk sits next to the script that is running now: the tracker, which
  // creates its patcher while it starts.
  const load = loadExtra || extraNextTo(doc.currentScript && doc.currentScript.src);
  let extra; // the chunk's exports, once loaded
  let loading; // its pending import
  const live = new Map(); // patch id -> record {patch, json, pseq, entries, fights, timer, subs, on}
  const subscribers = new Set(); // [slot, callback]
  let jobs = [];
  let frame = 0;
  const observer = new win.MutationObserver(() => jobs.includes(check) || schedule(check));

  const send = (rec, status, t0, reason) =>
    report({ id: rec.patch.id, pseq: rec.pseq, status, ...(reason && { reason }), ms: Math.round((now() - t0) * 10) / 10 });

  function schedule(job) {
    jobs.push(job);
    frame = frame || win.requestAnimationFrame(flush);
  }

  // The one frame in which every pending write happens; reports wait until it is painted.
  function flush() {
    const run = jobs;
    const painted = [];
    frame = 0;
    jobs = [];
    if (observer.takeRecords().length && !run.includes(check)) run.unshift(check);
    run.forEach((job) => job(painted));
    observer.takeRecords(); // our own writes: not the page undoing us
    [...live.values()].some((r) => r.on) ? observer.observe(root, OBSERVE) : observer.disconnect();
    if (painted.length) win.setTimeout(() => painted.forEach((p) => send(...p)));
  }

  // Makes sure every (element, op) pair of the patch has its effect; throws why not.
  function fill(rec) {
    const { id, ops, target: t } = rec.patch;
    let els;
    try {
      els = [...root.querySelectorAll(t.sel || `[data-ma-${t.slot ? "slot" : "item"}="${t.slot || t.item}"]`)];
    } catch {
      els = 0; // a selector the browser cannot parse
    }
    if (!els || els.some((el) => el.closest(UNSAFE_TARGET))) throw ["refused", "target"];
    if (!els.length && !ops.every(pageLevel)) throw "target";
    const ctx = { root, doc, dismiss: () => revert(id, "dismissed") };
    ops.forEach((op, i) => {
      for (const el of pageLevel(op) ? [null] : els)
        if (!rec.entries.some((e) => e.el == el && e.i == i)) {
          const write = OPS[op.op] || (extra || 0).write;
          if (!write) throw "extra_unavailable";
          rec.entries.push({ el, i, ...write(op, el, ctx) });
        }
    });
  }

  function undo(rec) {
    win.clearTimeout(rec.timer);
    // Only to the subscribers still subscribed: an unsubscribed component (unmounted) is not called.
    if (rec.subs) return deliver(rec.subs.filter((s) => subscribers.has(s)).map((s) => s[1]), { id: rec.patch.id, target: rec.patch.target, ops: [{ op: "revert" }] });
    rec.entries.reverse().forEach((e) => e.undo());
    rec.entries = [];
    rec.on = 0;
  }

  function deliver(callbacks, patch) {
    for (const cb of callbacks)
      try {
        cb(patch);
      } catch (e) {
        win.reportError && win.reportError(e); // a subscriber's bug is its own; the others still get the patch
      }
  }

  function start(rec) {
    if (rec.patch.ttl) rec.timer = win.setTimeout(() => revert(rec.patch.id, "ttl"), rec.patch.ttl);
  }

  // Runs on page mutations: re-applies what a re-render undid, with the loop guard.
  function check(painted) {
    for (const rec of live.values()) {
      if (!rec.on) continue;
      const broken = rec.entries.filter((e) => (e.el && !e.el.isConnected) || !e.holds());
      if (broken.length) {
        // The page now owns what it overwrote: forget those undos, only remove nodes we inserted.
        rec.entries = rec.entries.filter((e) => !broken.includes(e));
        broken.forEach((e) => e.drop && e.drop());
        const t = now();
        rec.fights = rec.fights.filter((f) => t - f < FIGHT_WINDOW).concat(t);
        if (rec.fights.length > maxFights) {
          undo(rec);
          live.delete(rec.patch.id);
          painted.push([rec, "failed", t, "loop"]);
          continue;
        }
      }
      try {
        fill(rec);
      } catch {
        /* the target or a template is gone for now: wait for the page to settle */
      }
    }
  }

  function revert(id, reason) {
    const rec = live.get(id);
    const t0 = now();
    if (!rec) return;
    live.delete(id);
    win.clearTimeout(rec.timer);
    if (rec.subs) {
      undo(rec);
      return send(rec, "reverted", t0, reason);
    }
    schedule((painted) => {
      undo(rec);
      painted.push([rec, "reverted", t0, reason]);
    });
  }

  function apply({ pseq, patch, causeAt }) {
    const t0 = causeAt == null ? now() : causeAt;
    const reason = checkPatch(patch);
    if (reason) return report({ id: patch && patch.id, pseq, status: "refused", reason, ms: Math.round((now() - t0) * 10) / 10 });
    const json = JSON.stringify(patch);
    const old = live.get(patch.id);
    if (old && old.json == json) return; // §5: the same patch again is a no-op
    const rec = { patch, json, pseq, entries: [], fights: [] };
    const subs = [...subscribers].filter((s) => s[0] == patch.target.slot);
    live.set(patch.id, rec);
    if (old) win.clearTimeout(old.timer);
    if (subs.length) {
      if (old) old.subs ? undo(old) : schedule(() => undo(old));
      deliver((rec.subs = subs).map((s) => s[1]), patch);
      start(rec);
      return send(rec, "delegated", t0);
    }
    const job = (painted) => {
      if (old) undo(old); // §5: a new patch under a known id replaces the old one
      if (live.get(patch.id) != rec) return; // reverted or replaced before this frame
      try {
        fill(rec);
        rec.on = 1;
        // in the same frame as the writes, so nothing renders unstyled
        if (extra) extra.install(root, win);
        start(rec);
        painted.push([rec, "applied", t0]);
      } catch (why) {
        undo(rec);
        live.delete(patch.id);
        const [status, r] = why.map ? why : ["failed", why + ""];
        painted.push([rec, status, t0, r]);
      }
    };
    if (extra || !(patch.ops.some(lazy) || (win.matchMedia && win.matchMedia("(prefers-reduced-motion:reduce)").matches))) return schedule(job);
    // The first patch that needs the chunk waits for it (so do others arriving meanwhile); a
    // failed load is tried again by the next such patch.
    loading =
      loading ||
      Promise.resolve()
        .then(load)
        .then(
          (x) => (extra = x),
          () => (loading = 0),
        );
    loading.then(() => schedule(job));
  }

  return {
    apply,
    revert: (id) => revert(id),
    revertAll: () => [...live.keys()].forEach((id) => revert(id)),
    subscribe(slot, cb) {
      const s = [slot, cb];
      subscribers.add(s);
      return () => subscribers.delete(s);
    },
  };
}
