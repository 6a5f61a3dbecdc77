// No lost events (issue 3, docs/TRACKER.md "Delivery", PROTOCOL §3/§3.2/§4): a page on its own
// origin (a tiny static server, allowed with `--site demo=ORIGIN`) loads the default bundle against
// a private `microadjust serve` that the test stops and restarts. The server's event log (JSON lines
// under --data-dir, which survives the restart) must hold exactly the page's sequence numbers
// 1..seq, each once, whether they came by socket, by resend on a later page or by beacon.
import { test, expect, startServer, ROOT } from "./fixtures.mjs";
import http from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const BUNDLE = join(ROOT, "client_js", "dist", "microadjust.min.js");
const html = (title, endpoint, flushMs) => `<!doctype html><title>${title}</title>
<style>.product{display:block;height:300px;margin:8px;background:#eee}.long{height:3000px}</style>
<section data-ma-slot="grid"><article class="product" data-ma-item="p1">P1</article><article class="product" data-ma-item="p2">P2</article></section>
<div class="long"></div>
<script src="/microadjust.js" data-site="demo" data-endpoint="${endpoint}" data-flush-ms="${flushMs}" async></script>`;

let site, srv;
test.beforeAll(async () => {
  const js = readFileSync(BUNDLE);
  site = http.createServer((q, r) => {
    const u = new URL(q.url, "http://x");
    if (u.pathname === "/microadjust.js") return r.writeHead(200, { "content-type": "text/javascript" }).end(js);
    if (u.pathname === "/plain") return r.writeHead(200, { "content-type": "text/html" }).end("<title>No tracker</title>bye");
    const endpoint = u.searchParams.get("endpoint") || site.endpoint; // another server's stream
    r.writeHead(200, { "content-type": "text/html" }).end(html(u.pathname, endpoint, u.searchParams.get("flush") || "100"));
  });
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  site.origin = `http://127.0.0.1:${site.address().port}`;
  srv = await startServer(["--site", `demo=${site.origin}`]);
  site.endpoint = srv.url.replace("http", "ws") + "/v1/stream";
});
test.afterAll(async () => {
  await srv?.cleanup();
  site?.close();
});

/** The session's records in the server's event log, in log order. */
function stored(sid) {
  const f = join(srv.dataDir, "events.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.sid === sid);
}
const range = (n) => Array.from({ length: n }, (_, i) => i + 1);
const state = (page) => page.evaluate(() => microadjust.state());
/** Urgent and batched events: goals, a scroll gesture, a hover end. */
async function activity(page, tag, n) {
  for (let i = 0; i < n; i++) await page.evaluate(([t, i]) => microadjust.track("step", { t, i }), [tag, i]);
  await page.mouse.wheel(0, 400);
  await page.hover("[data-ma-item=p1]");
  await page.waitForTimeout(600); // a hover >= 500 ms sends an `end` on leave
  await page.mouse.move(5, 5);
}

test("server down, navigate away and back, server returns: the log holds 1..seq exactly once", async ({ page }) => {
  await page.goto(site.origin + "/a");
  await page.waitForFunction(() => microadjust.state().state === "open");
  const { sid } = await state(page);
  await activity(page, "up", 3);
  await page.waitForFunction(() => ((s) => s.acked === s.seq && s.pending === 0)(microadjust.state()));
  const before = (await state(page)).seq;
  expect(stored(sid).map((e) => e.seq)).toEqual(range(before));

  await srv.stop(); // the socket dies mid-stream
  await page.waitForFunction(() => microadjust.state().state === "closed");
  await activity(page, "down-a", 4);
  await page.goto(site.origin + "/b"); // pagehide: the beacon fails too (server down)
  await page.waitForFunction(() => window.microadjust && microadjust.state().sid);
  expect((await state(page)).sid).toBe(sid); // the session continues in this tab
  await activity(page, "down-b", 3);
  await page.goto(site.origin + "/a"); // and back
  await page.waitForFunction(() => window.microadjust && microadjust.state().sid);
  await activity(page, "down-a2", 2);
  const offline = await state(page);
  expect(offline).toMatchObject({ sid, dropped: 0 });
  expect(offline.acked).toBeLessThan(offline.seq);
  expect(offline.pending).toBe(offline.seq - before); // every event since the stop, from all three pages

  await srv.start(); // same port and data dir; the memory store forgot the session's ack
  await page.waitForFunction(() => ((s) => s.state === "open" && s.acked === s.seq && s.pending === 0)(microadjust.state()), null, { timeout: 40_000 });
  const { seq } = await state(page);
  expect(seq).toBe(offline.seq);
  const seqs = stored(sid).map((e) => e.seq);
  expect(seqs.length).toBe(seq); // the server's count equals the page's
  expect([...seqs].sort((a, b) => a - b)).toEqual(range(seq)); // no gap, no (sid, seq) twice
  // The restarted process counted exactly what had not been stored before the stop.
  expect((await srv.admin(`/v1/admin/stats?sid=${sid}`)).body.sessions[sid]).toBe(seq - before);
  const goals = stored(sid).filter((e) => e.k === "custom").map((e) => e.props.t);
  expect(goals.filter((t) => t.startsWith("down")).length).toBe(9);
});

test("pagehide beacon: events still pending at navigation arrive by POST /v1/events exactly once", async ({ page }) => {
  // The socket is proxied to the real server; from `swallow` on, the page's event batches are
  // not forwarded (as if the socket stalled), so the beacon is the only way they can arrive.
  let swallow = false;
  await page.routeWebSocket(/\/v1\/stream/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => (swallow && JSON.parse(m).t === "events" ? undefined : server.send(m)));
  });
  const statsBefore = (await srv.admin("/v1/admin/stats")).body;

  await page.goto(site.origin + "/a?flush=60000"); // a batched event waits 60 s: only urgent ones go at once
  await page.waitForFunction(() => microadjust.state().state === "open");
  await page.evaluate(() => microadjust.track("first"));
  await page.waitForFunction(() => ((s) => s.seq >= 2 && s.acked === s.seq)(microadjust.state())); // view + goal
  const { sid } = await state(page);
  swallow = true;
  await activity(page, "pending", 3); // urgent goals, and a scroll and hover end that wait for the timer
  await page.evaluate(() => new Promise((r) => setTimeout(r, 300)));
  const pending = await state(page);
  expect(pending.pending).toBe(pending.seq - pending.acked);
  expect(pending.pending).toBeGreaterThanOrEqual(5);
  await page.goto(site.origin + "/plain"); // pagehide; the next page has no tracker to resend

  // The page's final count: events emitted at pagehide itself (dwell spans end, the hover ends)
  // are numbered too, and the batcher persisted its state for the tab (same origin, same tab).
  const tab = await page.evaluate(() => JSON.parse(sessionStorage.getItem("ma_q")));
  const seq = tab.n - 1;
  expect(seq).toBeGreaterThanOrEqual(pending.seq);
  await expect.poll(() => stored(sid).length, { timeout: 10_000 }).toBe(seq);
  const seqs = stored(sid).map((e) => e.seq);
  expect([...seqs].sort((a, b) => a - b)).toEqual(range(seq)); // each once, none missing
  const statsAfter = (await srv.admin("/v1/admin/stats")).body;
  expect(statsAfter.sessions[sid]).toBe(seq);
  // Events above the socket's last ack could only come by beacon, and the tracker sent them once:
  // the server saw beacons, and no resent event it had to drop as a duplicate.
  expect(statsAfter.beacons).toBeGreaterThan(statsBefore.beacons);
  expect(statsAfter.duplicates).toBe(statsBefore.duplicates);
});

test("batches the server drops for the rate limit are resent after its 1013: the log holds 1..seq exactly once", async ({ page }) => {
  // A private server whose per-socket limit a burst of goals exceeds (2 messages, then 1 per 5 s).
  const strict = await startServer(["--site", `demo=${site.origin}`, "--limit", "rate_per_s=0.2", "--limit", "rate_burst=2"]);
  try {
    const endpoint = strict.url.replace("http", "ws") + "/v1/stream";
    await page.goto(site.origin + "/strict?endpoint=" + encodeURIComponent(endpoint));
    await page.waitForFunction(() => microadjust.state().state === "open");
    const { sid } = await state(page);
    // One goal per task: each is its own frame (goals of one task would share one).
    for (let i = 0; i < 6; i++) await page.evaluate((i) => microadjust.track("burst", { i }), i);
    await page.waitForFunction(() => ((s) => s.pending === 0 && s.acked === s.seq)(microadjust.state()), null, { timeout: 20_000 });
    const { seq } = await state(page);
    expect(seq).toBeGreaterThanOrEqual(7); // the view and six goals
    const log = () =>
      readFileSync(join(strict.dataDir, "events.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.sid === sid);
    expect(log().map((e) => e.seq).sort((a, b) => a - b)).toEqual(range(seq));
    expect((await strict.admin("/v1/admin/stats")).body.rejected.rate_limited).toBeGreaterThan(0);
  } finally {
    await strict.cleanup();
  }
});
