// SPA routes (issue 3, docs/TRACKER.md "Events on the wire" `view`): pushState, replaceState,
// popstate and hashchange each produce one `view` per real URL change, after 100 ms of settling,
// and none when the URL did not change. A page on its own origin (a tiny static server, allowed
// with `--site demo=ORIGIN`) loads the default bundle against a private `microadjust serve`; the
// views are read back from the server's event log (and their `via` from the wire).
import { test, expect, startServer, ROOT } from "./fixtures.mjs";
import http from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const BUNDLE = join(ROOT, "client_js", "dist", "microadjust.min.js");
const html = (endpoint) => `<!doctype html><title>Router</title>
<main data-ma-slot="app"><article data-ma-item="p1" data-ma-tags="shoes">P1</article></main>
<script src="/microadjust.js" data-site="demo" data-endpoint="${endpoint}" data-flush-ms="50" async></script>`;

let site, srv;
test.beforeAll(async () => {
  const js = readFileSync(BUNDLE);
  site = http.createServer((q, r) => {
    if (q.url === "/microadjust.js") return r.writeHead(200, { "content-type": "text/javascript" }).end(js);
    r.writeHead(200, { "content-type": "text/html" }).end(html(site.endpoint)); // every route is the app
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

const views = (sid) => {
  const f = join(srv.dataDir, "events.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.sid === sid && e.k === "view");
};

test("one view per real URL change (push, replace, pop, hash), none for a same-URL change", async ({ page }) => {
  const wireViews = [];
  page.on("websocket", (ws) =>
    ws.on("framesent", (f) => {
      const m = JSON.parse(f.payload);
      if (m.t === "events") wireViews.push(...m.events.filter((e) => e.k === "view"));
    }),
  );
  await page.goto(site.origin + "/");
  await page.waitForFunction(() => microadjust.state().state === "open");
  const { sid } = await page.evaluate(() => microadjust.state());
  const expected = [["/", "load"]];
  /** Runs `fn` in the page; when `url` is given, waits for the server to have stored its view. */
  async function step(fn, arg, url, via) {
    await page.evaluate(fn, arg);
    if (url) {
      expected.push([url, via]);
      await expect.poll(() => views(sid).map((v) => v.url)).toEqual(expected.map((e) => e[0]));
    } else {
      // A non-change: past the 100 ms settling and the 50 ms flush, and then the next real change
      // proves it: a view for this one would be stored before the next one's.
      await page.evaluate(() => new Promise((r) => setTimeout(r, 300)));
    }
  }
  const push = (u) => history.pushState({}, "", u);
  const replace = (u) => history.replaceState({}, "", u);
  await step(push, "/shop", "/shop", "push");
  await step(push, "/shop"); // same URL
  await step(replace, "/shop?page=2", "/shop?page=2", "replace");
  await step(replace, "/shop?page=2"); // same URL
  await step(push, "/cart", "/cart", "push");
  await step(() => history.back(), null, "/shop?page=2", "pop");
  await step(() => (location.hash = "reviews"), null, "/shop?page=2#reviews", "hash"); // popstate and hashchange: one change
  await step(() => history.back(), null, "/shop?page=2", "hash"); // back across a fragment: popstate + hashchange
  // A router's push + replace pair (e.g. canonicalising the URL) is one change, named by the last.
  await step(() => (history.pushState({}, "", "/p/1"), history.replaceState({}, "", "/p/1?ref=list")), null, "/p/1?ref=list", "replace");
  await step(() => (history.pushState({}, "", "/tmp"), history.replaceState({}, "", "/p/1?ref=list"))); // pushed and undone
  await step(push, "/done", "/done", "push");

  // Server-side: exactly these views, in order, each with the page's items; via on the wire.
  const stored = views(sid);
  expect(stored.map((v) => v.url)).toEqual(expected.map((e) => e[0]));
  expect(stored.every((v) => v.items.length === 1 && v.items[0].key === "p1")).toBe(true);
  expect(wireViews.map((v) => [v.url, v.via ?? "load"])).toEqual(expected);
  const seqs = stored.map((v) => v.seq);
  expect(new Set(seqs).size).toBe(seqs.length);
});
