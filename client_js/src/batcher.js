// The batcher: gives every event its per-session sequence number (PROTOCOL §3: starts at 1, never
// repeats within a session) and keeps it until the server acks it (§4). The unacked buffer is
// bounded and persisted (sessionStorage, via `save`) so that what one page could not deliver is
// resent by the next page of the tab; the server de-duplicates by (session, seq), so a resend never
// counts twice. Flushes on size (`maxPending` unsent events), on time (`flushMs`) and, for urgent
// events (clicks, goals, hover intent), at the end of the current task: a loop of `track()` calls
// goes out as one frame, not one each (the server's per-socket rate limit counts frames).
export function createBatcher({
  send, // (batchMessage) -> boolean: true when the transport took it
  load = () => null,
  save = () => {},
  flushMs = 500,
  maxBuffer = 500, // ~100 B per event: 50 KB of sessionStorage at most
  maxPending = 20,
  timers = globalThis,
  defer = queueMicrotask, // runs a function at the end of the current task
}) {
  let next = 1; // next sequence number
  let buf = []; // [[seq, event], ...] in seq order, all unacked
  let dropped = 0; // events lost to the buffer bound (reported by state())
  let sent = 0; // highest seq handed to the current connection
  let acked = 0;
  let batch = 100; // events per batch: welcome's limits.batch (§2.3), halved after a 1009
  let frame = 65536; // bytes per frame: welcome's limits.frame
  let timer = 0;
  let soon = 0; // 1 while an urgent flush waits for the end of the task

  const persist = () => save({ n: next, b: buf, d: dropped });

  // The tab's persisted state, when it is ahead of ours: at start, and when a page comes back from
  // the back/forward cache after another page of the tab went on numbering the same session.
  function restore() {
    const saved = load();
    if (saved && saved.n >= next && Array.isArray(saved.b)) {
      next = saved.n;
      buf = saved.b;
      dropped = saved.d | 0;
    }
  }
  restore();

  function push(event, urgent) {
    const seq = next++;
    buf.push([seq, event]);
    if (buf.length > maxBuffer) {
      buf.splice(0, buf.length - maxBuffer);
      dropped++;
    }
    if (buf.length - unsentFrom() >= maxPending) flush();
    else if (urgent) {
      // One flush at the end of the task, unless one came first (on size) or clear() did.
      if (!soon) {
        soon = 1;
        defer(() => soon && flush());
      }
    } else if (!timer) timer = timers.setTimeout(flush, flushMs);
    return seq;
  }

  // Index of the first entry not yet sent on this connection.
  function unsentFrom() {
    let i = buf.length;
    while (i > 0 && buf[i - 1][0] > sent) i--;
    return i;
  }

  /** Consecutive runs of entries as batch messages, each within the batch and frame limits. */
  function batches(entries, extra) {
    const out = [];
    for (let i = 0; i < entries.length; ) {
      let n = Math.min(batch, entries.length - i);
      // Sequence numbers must be consecutive within a batch (§3): cut at gaps.
      for (let j = 1; j < n; j++) if (entries[i + j][0] !== entries[i][0] + j) n = j;
      for (;;) {
        const msg = Object.assign({}, extra, { seq: entries[i][0], events: entries.slice(i, i + n).map((e) => e[1]) });
        const text = JSON.stringify(msg);
        if (n === 1 || new Blob([text]).size <= frame) {
          out.push([text, n]);
          break;
        }
        n = Math.ceil(n / 2);
      }
      i += n;
    }
    return out;
  }

  function flush() {
    timers.clearTimeout(timer);
    timer = soon = 0;
    const from = unsentFrom();
    if (from < buf.length) {
      const entries = buf.slice(from);
      const texts = batches(entries, { t: "events" });
      let k = 0;
      for (const [text, n] of texts) {
        if (!send(text)) break;
        k += n;
      }
      if (k) sent = entries[k - 1][0];
    }
    persist();
  }

  /** §4: cumulative ack; drops everything up to and including `seq`. */
  function ack(seq) {
    if (!(seq > acked)) return;
    acked = seq;
    let i = 0;
    while (i < buf.length && buf[i][0] <= seq) i++;
    if (i) buf.splice(0, i);
    // A session restored on a new page may know a higher ack than we ever assigned (another page
    // of the tab): never reuse its numbers.
    if (next <= seq) next = seq + 1;
    persist();
  }

  /** §2.3 welcome: drop what the server has, then resend the rest on the new connection. */
  function welcome(w) {
    if (w.limits) {
      if (w.limits.batch > 0) batch = Math.min(batch, w.limits.batch);
      if (w.limits.frame > 0) frame = w.limits.frame;
    }
    ack(w.ack | 0);
    sent = acked;
    flush();
  }

  return {
    push,
    flush,
    ack,
    welcome,
    restore,
    /** A new connection starts: nothing is sent on it yet. */
    reset() {
      sent = acked;
    },
    /** §7 close 1009: the frame was too large; send smaller batches from now on. */
    shrink() {
      batch = Math.max(1, batch >> 1);
      frame = Math.max(1024, frame >> 1);
    },
    /** Every unacked event as beacon bodies (§3.2): same batches, same seq, plus the identity. */
    beaconBodies(identity) {
      return batches(buf, identity).map((b) => b[0]);
    },
    clear() {
      buf = [];
      next = 1;
      sent = acked = dropped = 0;
      timers.clearTimeout(timer);
      timer = soon = 0;
    },
    stats: () => ({ seq: next - 1, pending: buf.length, acked, dropped }),
  };
}
