// The stream: one WebSocket per page (PROTOCOL §1), hello/welcome (§2), event batches through the
// batcher (§3) with cumulative acks (§4), patches in (§5), heartbeat (§6) and the close codes of
// §7: reconnect with full-jitter exponential backoff, never on the codes that say "do not", at once
// (jittered) on 4010 draining. Offline browsers wait for `online` instead of burning attempts.
//
// States: idle -> connecting (socket open, hello sent) -> open (welcome received) -> closed
// (waiting to reconnect) -> connecting ...; stopped is final (fatal close code, consent revoked).

// §7: the server told us not to come back; reconnecting would only repeat the same failure.
export const NO_RECONNECT = [1003, 4001, 4002, 4003, 4005];
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30000;

export function createTransport({
  url,
  hello, // () -> hello message (§2.2)
  batcher,
  onMessage, // welcome (after the transport's own part), patch / revert / error messages
  onState = () => {},
  WebSocketImpl = globalThis.WebSocket,
  timers = globalThis,
  random = Math.random,
  clock = Date.now,
  isOnline = () => navigator.onLine,
}) {
  let ws = null;
  let state = "idle";
  let attempts = 0;
  let retry = 0;
  let hbTimer = 0;
  let lastTx = 0;
  let lastRx = 0;
  const outbox = []; // small messages (applied reports) that wait for the next welcome

  const set = (s) => {
    if (s !== state) {
      state = s;
      onState(s);
    }
  };

  function connect() {
    timers.clearTimeout(retry);
    retry = 0;
    if (state === "stopped" || ws) return;
    if (!isOnline()) return set("closed"); // `online` will call connect()
    set("connecting");
    batcher.reset();
    let sock;
    try {
      sock = new WebSocketImpl(url);
    } catch (e) {
      return closed(1006, String(e && e.message));
    }
    ws = sock;
    sock.onopen = () => raw(JSON.stringify(hello()));
    sock.onmessage = (e) => receive(e.data);
    sock.onclose = (e) => {
      if (ws === sock) closed(e.code, e.reason);
    };
  }

  function raw(text) {
    if (!ws || ws.readyState !== 1) return false;
    ws.send(text);
    lastTx = clock();
    return true;
  }

  function receive(data) {
    lastRx = clock();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return; // not JSON: nothing a v1 server sends; ignored
    }
    if (msg.t === "welcome") {
      attempts = 0;
      set("open");
      heartbeat(msg.hb > 0 ? msg.hb : 25000);
      while (outbox.length && raw(outbox[0])) outbox.shift();
      batcher.welcome(msg); // §2.3: drops acked events, resends the rest
    } else if (msg.t === "ack") {
      return batcher.ack(msg.seq);
    }
    // welcome too: its pseq and resume are the tracker's (§2.3)
    if (msg.t !== "pong") onMessage(msg);
  }

  // §6: ping when nothing else was sent for `hb` ms; a server silent for 3 x hb is presumed gone
  // (a half-open TCP connection never fires onclose), so drop the socket and reconnect.
  function heartbeat(hb) {
    timers.clearInterval(hbTimer);
    hbTimer = timers.setInterval(() => {
      const t = clock();
      if (t - lastRx > 3 * hb) return drop(4008, "timeout");
      if (t - lastTx >= hb - 50) raw('{"t":"ping"}');
    }, hb);
  }

  function drop(code, reason) {
    const sock = ws;
    if (!sock) return;
    ws = null;
    sock.onclose = sock.onmessage = sock.onopen = null;
    try {
      sock.close(1000);
    } catch (e) {
      /* already closing */
    }
    closed(code, reason);
  }

  function closed(code, reason) {
    ws = null;
    timers.clearInterval(hbTimer);
    if (state === "stopped" || state === "idle") return;
    if (NO_RECONNECT.indexOf(code) >= 0) {
      console.warn("microadjust: closed", code, reason);
      return set("stopped");
    }
    if (code === 1009) batcher.shrink();
    set("closed");
    // Full jitter (uniform in [0, min(cap, base * 2^n)]) spreads a fleet of tabs over the window
    // after a server restart instead of stampeding it; 4010 draining means "elsewhere, now";
    // 1013 (a batch was dropped: rate limited, not stored) means "after a pause": 1 s more.
    const delay = code === 4010 ? random() * 1000 : (code === 1013) * 1000 + random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempts++);
    retry = timers.setTimeout(connect, delay);
  }

  return {
    start: connect,
    /** For the batcher: true when the frame went out on an open (welcomed) stream. */
    sendBatch: (text) => state === "open" && raw(text),
    /** A small message; kept (up to 50) until the next welcome when the stream is down. */
    send(msg) {
      const text = JSON.stringify(msg);
      if (!(state === "open" && raw(text)) && outbox.length < 50) outbox.push(text);
    },
    /** `online` event: try now, the network is back. `offline`: nothing to do until it is. */
    online() {
      if (state === "closed") {
        attempts = 0;
        connect();
      }
    },
    /** Close without reconnecting until start() (pagehide into bfcache) or for good (stopped). */
    stop(final) {
      set(final ? "stopped" : "idle");
      timers.clearTimeout(retry);
      timers.clearInterval(hbTimer);
      const sock = ws;
      ws = null;
      if (sock) {
        sock.onclose = sock.onmessage = sock.onopen = null;
        sock.close(1000);
      }
    },
    state: () => state,
    attempts: () => attempts,
  };
}
