// The patcher: applies the server's patches (PROTOCOL §5) to the page, or hands them to a
// subscribe() callback, and reports each outcome (§5.2). docs/PATCHES.md is the user's guide.
//
// - Every patch is checked against the closed vocabulary first (vocabulary.js); anything else
//   is `refused`, never partly applied.
// - All DOM writes requested during a tick run in ONE requestAnimationFrame; `ms` is measured
//   from the causing event (or receipt) to the next frame, i.e. after the write was painted.
// - Each applied patch keeps an undo record per (element, op), so revert puts back exactly what
//   was there; a patch id is idempotent, and new content under a known id replaces the old.
// - A MutationObserver notices when the page (a React/Vue re-render) undoes an effect and
//   re-applies it; the patcher's own writes are discarded with takeRecords() right after they
//   are made, so it never reacts to itself. More than `maxFights` re-applies of one patch
//   within FIGHT_WINDOW ms means the page and the patch disagree: revert, report `failed: loop`.

import { checkPatch } from "./vocabulary.js";
import { write } from "./ops.js";
import { installStyles } from "./notify.js";

/** Re-applies of one patch within this many ms that count towards `maxFights`. */
export const FIGHT_WINDOW = 10000;

// A patch may never write into these (setText into an empty <script> would run it; into a
// <style> it would inject CSS), whatever selector a rule uses.
const UNSAFE_TARGET = "head,script,style,template,noscript,iframe,object,embed,svg script,svg style";
const OBSERVE = { subtree: true, childList: true, attributes: true, characterData: true };

const pageLevel = (op) => op.op == "notify" && op.kind != "badge";

export function createPatcher({ report, root = document, win = window, now = () => performance.now(), maxFights = 5 } = {}) {
  const doc = root.ownerDocument || root;
  const live = new Map(); // patch id -> record {patch, json, pseq, entries, fights, timer, subs, on}
  const subscribers = new Map(); // slot -> Set of callbacks
  let jobs = [];
  let frame = 0;
  const observer = new win.MutationObserver(() => jobs.includes(check) || schedule(check));

  const since = (t0) => Math.round((now() - t0) * 10) / 10;
  const send = (rec, status, t0, reason) =>
    report({ id: rec.patch.id, pseq: rec.pseq, status, ...(reason && { reason }), ms: since(t0) });

  function schedule(job) {
    jobs.push(job);
    frame ||= win.requestAnimationFrame(flush);
  }

  // The one frame in which every pending write happens; reports wait for the frame after it.
  function flush() {
    frame = 0;
    const run = jobs;
    const painted = [];
    jobs = [];
    if (observer.takeRecords().length && !run.includes(check)) run.unshift(check);
    for (const job of run) job(painted);
    observer.takeRecords(); // our own writes: not the page undoing us
    [...live.values()].some((r) => r.on) ? observer.observe(root, OBSERVE) : observer.disconnect();
    if (painted.length) win.requestAnimationFrame(() => painted.forEach((p) => send(...p)));
  }

  // Elements the target names (§5), or a refusal reason.
  function resolve(t) {
    let els;
    try {
      els = [...root.querySelectorAll(t.sel || `[data-ma-${t.slot ? "slot" : "item"}="${t.slot || t.item}"]`)];
    } catch {
      return "target"; // a selector the browser cannot parse
    }
    return els.some((el) => el.closest(UNSAFE_TARGET)) ? "target" : els;
  }

  // Makes sure every (element, op) pair of the patch has its effect; returns "" or why not.
  function fill(rec, els) {
    const { id, ops } = rec.patch;
    const ctx = { root, doc, dismiss: () => revert(id, "dismissed") };
    if (!els.length && !ops.every(pageLevel)) return "target";
    ops.forEach((op, i) => {
      for (const el of pageLevel(op) ? [null] : els)
        if (!rec.entries.some((e) => e.el == el && e.i == i)) rec.entries.push({ el, i, ...write(op, el, ctx) });
    });
    return "";
  }

  function undo(rec) {
    win.clearTimeout(rec.timer);
    if (rec.subs) return rec.subs.forEach((cb) => deliver(cb, { id: rec.patch.id, target: rec.patch.target, ops: [{ op: "revert" }] }));
    rec.entries.reverse().forEach((e) => e.undo());
    rec.entries = [];
    rec.on = 0;
  }

  function deliver(cb, patch) {
    try {
      cb(patch);
    } catch (e) {
      win.reportError?.(e); // a subscriber's bug is its own; other subscribers still get the patch
    }
  }

  function armTtl(rec) {
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
        broken.forEach((e) => e.drop?.());
        const t = now();
        rec.fights = rec.fights.filter((f) => t - f < FIGHT_WINDOW).concat(t);
        if (rec.fights.length > maxFights) {
          undo(rec);
          live.delete(rec.patch.id);
          painted.push([rec, "failed", t, "loop"]);
          continue;
        }
      }
      const els = resolve(rec.patch.target);
      try {
        if (els.map) fill(rec, els);
      } catch {
        /* a template the re-render removed: wait for the page to settle */
      }
    }
  }

  function revert(id, reason) {
    const rec = live.get(id);
    if (!rec) return;
    live.delete(id);
    const t0 = now();
    if (rec.subs) {
      undo(rec);
      return send(rec, "reverted", t0, reason);
    }
    win.clearTimeout(rec.timer);
    schedule((painted) => {
      undo(rec);
      painted.push([rec, "reverted", t0, reason]);
    });
  }

  function apply({ pseq, patch, causeAt }) {
    const t0 = causeAt ?? now();
    const reason = checkPatch(patch);
    if (reason) return report({ id: patch?.id, pseq, status: "refused", reason, ms: since(t0) });
    const json = JSON.stringify(patch);
    const old = live.get(patch.id);
    if (old?.json == json) return; // §5: the same patch again is a no-op
    const rec = { patch, json, pseq, entries: [], fights: [] };
    live.set(patch.id, rec);
    if (old) win.clearTimeout(old.timer);
    const subs = subscribers.get(patch.target.slot);
    if (subs?.size) {
      if (old) old.subs ? undo(old) : schedule(() => undo(old));
      rec.subs = [...subs];
      rec.subs.forEach((cb) => deliver(cb, patch));
      armTtl(rec);
      return send(rec, "delegated", t0);
    }
    schedule((painted) => {
      if (old) undo(old); // §5: a new patch under a known id replaces the old one
      if (live.get(patch.id) != rec) return; // reverted or replaced before this frame
      const els = resolve(patch.target);
      let why = els.map ? "" : els;
      try {
        why ||= fill(rec, els);
      } catch (e) {
        why = e + "";
      }
      if (why) {
        undo(rec);
        live.delete(patch.id);
        return painted.push([rec, els.map ? "failed" : "refused", t0, why]);
      }
      rec.on = 1;
      installStyles(root, win); // in the same frame as the writes, so nothing renders unstyled
      armTtl(rec);
      painted.push([rec, "applied", t0]);
    });
  }

  return {
    apply,
    revert: (id) => revert(id),
    revertAll: () => [...live.keys()].forEach((id) => revert(id)),
    subscribe(slot, cb) {
      subscribers.has(slot) || subscribers.set(slot, new Set());
      subscribers.get(slot).add(cb);
      return () => subscribers.get(slot).delete(cb);
    },
  };
}
