// The default bundle's stand-in for the patcher. The patcher itself (patcher/, built as
// microadjust-patcher.js next to the tracker) is not in the bundle (docs/TRACKER.md "Size
// budget"): it is fetched in a task of its own right after the server's `welcome` (`warm`), or
// with the first patch if that comes sooner. A page without consent (no socket) never loads it.
//
// Until the chunk is there this keeps the subscribe() registry and a queue of the patch and
// revert messages, in order; once it has loaded, it creates the patcher, registers the
// subscribers and hands it the queue. If it cannot be loaded, every queued patch is reported
// `failed` with reason `patcher_unavailable` (PROTOCOL §5.2) and the next patch tries again.
// A revert while nothing is queued is dropped: nothing can be applied without the patcher, and
// the patcher ignores a revert of an unknown id too.
//
// `load()` returns a promise of the chunk's exports: import() of a URL on the tracker's own
// origin, governed by CSP `script-src` alone and no Trusted Types sink.

import { now } from "./dom.js";

export function lazyPatcher(load, options) {
  let patcher; // the real one, once loaded
  let loading; // the pending import
  let queue = []; // patch messages, and reverts as {id}, in order of arrival
  const subs = new Set(); // [slot, callback, unsubscribe once registered]

  const fetchChunk = () =>
    (loading =
      loading ||
      Promise.resolve()
        .then(load)
        .then((m) => m.create(options))
        .then(
          (p) => {
            patcher = p;
            subs.forEach((s) => (s[2] = p.subscribe(s[0], s[1])));
            queue.splice(0).forEach((m) => (m.t ? p.apply(m) : p.revert(m.id)));
          },
          () => {
            loading = 0;
            queue.splice(0).forEach(
              (m) => m.t && options.report({ id: m.patch && m.patch.id, pseq: m.pseq, status: "failed", reason: "patcher_unavailable", ms: Math.round((now() - m.causeAt) * 10) / 10 }),
            );
          },
        ));

  return {
    /** Fetch the chunk now, ahead of any patch (a failure is retried by the next patch). */
    warm: fetchChunk,
    /** A patch message ({t: "patch", pseq, patch, causeAt}); the tracker's own copy. */
    apply(msg) {
      if (patcher) return patcher.apply(msg);
      // §5.2: without a known cause, `ms` counts from receipt, which is now, not after the import
      if (msg.causeAt == null) msg.causeAt = now();
      queue.push(msg);
      fetchChunk();
    },
    revert(id) {
      if (patcher) patcher.revert(id);
      else if (queue.length) queue.push({ id });
    },
    revertAll() {
      queue = [];
      if (patcher) patcher.revertAll();
    },
    subscribe(slot, cb) {
      const s = [slot, cb, patcher && patcher.subscribe(slot, cb)];
      subs.add(s);
      return () => {
        subs.delete(s);
        if (s[2]) s[2]();
      };
    },
  };
}
