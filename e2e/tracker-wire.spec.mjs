// The tracker's wire output in real Chromium, under a strict CSP with Trusted Types enforced,
// checked message by message against the shared JSON Schemas (protocol/schema/). The peer here
// is a minimal PROTOCOL §2-§4 endpoint inside the spec (welcome, cumulative acks, beacon), so
// the test isolates the tracker; the full loop against the real server is in the other specs.
import { test, expect } from "@playwright/test";
import http from "node:http";
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import Ajv2020 from "ajv/dist/2020.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SCHEMA = join(ROOT, "protocol", "schema");
const ajv = new Ajv2020({ strict: false });
for (const f of readdirSync(SCHEMA)) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMA, f), "utf8")));
const check = (name, msg) => {
  const v = ajv.getSchema(`microadjust/${name}.schema.json`);
  expect(v(msg), `${name}: ${JSON.stringify(v.errors)}\n${JSON.stringify(msg)}`).toBe(true);
};

const CSP = "default-src 'self'; script-src 'self'; connect-src 'self' ws://127.0.0.1:*; require-trusted-types-for 'script'";
const items = Array.from({ length: 8 }, (_, i) => `<article data-ma-item="p${i}" data-ma-tags="sale shoes" class="product">Product ${i} <button>Add</button></article>`).join("");
const PAGE = `<!doctype html><title>Wire</title><link rel="stylesheet" href="/page.css"><section data-ma-slot="grid">${items}</section>
<form name="signup"><input name="email"><input type="password" name="pw"><div data-ma-ignore><input name="secret"></div></form>
<script src="/microadjust.js" data-site="demo" data-hover-intent="600" async></script>`;

let srv, url;
const frames = [];
const beacons = [];
test.beforeAll(async () => {
  const js = readFileSync(join(ROOT, "client_js", "dist", "microadjust.full.min.js"));
  // The patcher chunk sits next to the tracker; the tracker fetches it right after `welcome`.
  const chunk = readFileSync(join(ROOT, "client_js", "dist", "microadjust-patcher.js"));
  srv = http.createServer((q, r) => {
    if (q.url === "/microadjust.js") return r.writeHead(200, { "content-type": "text/javascript" }).end(js);
    if (q.url === "/microadjust-patcher.js") return r.writeHead(200, { "content-type": "text/javascript" }).end(chunk);
    if (q.url === "/page.css") return r.writeHead(200, { "content-type": "text/css" }).end(".product{display:block;height:300px}");
    if (q.url === "/v1/events") {
      let b = "";
      q.on("data", (d) => (b += d));
      return q.on("end", () => (beacons.push(JSON.parse(b)), r.writeHead(200).end('{"ack":0}')));
    }
    r.writeHead(200, { "content-type": "text/html", "content-security-policy": CSP }).end(PAGE);
  });
  const wss = new WebSocketServer({ server: srv });
  wss.on("connection", (ws) =>
    ws.on("message", (d) => {
      const m = JSON.parse(d);
      frames.push(m);
      if (m.t === "hello") ws.send(JSON.stringify({ t: "welcome", v: 1, sid: m.sid, ack: 0, hb: 25000, limits: { frame: 65536, batch: 100 }, pseq: m.pseq }));
      if (m.t === "events") ws.send(JSON.stringify({ t: "ack", seq: m.seq + m.events.length - 1 }));
    }),
  );
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${srv.address().port}/`;
});
test.afterAll(() => srv && srv.close());

test("every message the tracker sends is schema-valid, numbered from 1 without gaps, and never carries form values", async ({ page }) => {
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(() => window.microadjust && window.microadjust.state().state === "open");
  await page.mouse.move(640, 10);
  await page.hover("[data-ma-item=p0]", { position: { x: 5, y: 5 } }); // pass-through: leaves at once
  await page.hover("[data-ma-item=p1]");
  await page.waitForTimeout(900); // past the 600 ms intent threshold
  await page.mouse.wheel(0, 900);
  await page.waitForTimeout(400);
  await page.click("[data-ma-item=p2] button");
  await page.click("input[name=email]");
  await page.keyboard.type("someone@example.org");
  await page.fill("input[name=pw]", "hunter2");
  await page.fill("input[name=secret]", "s3cret");
  await page.evaluate(() => microadjust.track("add_to_cart", { item: "p2" }));
  await page.evaluate(() => history.pushState({}, "", "/checkout"));
  await page.waitForTimeout(1300);
  await page.goto("about:blank"); // pagehide: beacon
  await expect.poll(() => beacons.length).toBeGreaterThan(0);

  expect(problems).toEqual([]);
  check("hello", frames[0]);
  const events = [];
  for (const f of frames.slice(1)) {
    check("client-message", f);
    if (f.t === "events") f.events.forEach((e, i) => events.push([f.seq + i, e]));
  }
  for (const b of beacons) check("beacon", b);
  const seqs = [...new Set(events.map((e) => e[0]))];
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  const kinds = events.map((e) => e[1]);
  const hovers = kinds.filter((e) => e.k === "hover");
  // p1 is hovered on purpose; after the wheel the pointer may rest on another product (also intent).
  expect(hovers.filter((e) => e.phase === "intent").map((e) => e.item)[0]).toBe("p1");
  expect(hovers.some((e) => e.item === "p0")).toBe(false);
  expect(kinds.find((e) => e.k === "view").items.length).toBe(8);
  expect(kinds.some((e) => e.k === "view" && e.via === "push" && e.url === "/checkout")).toBe(true);
  expect(kinds.some((e) => e.k === "scroll" && e.depth > 0 && e.dir === "down")).toBe(true);
  expect(kinds.some((e) => e.k === "click" && e.item === "p2")).toBe(true);
  expect(kinds.some((e) => e.k === "custom" && e.name === "add_to_cart")).toBe(true);
  expect(kinds.some((e) => e.k === "dwell" && e.ms >= 300)).toBe(true);
  expect(kinds.some((e) => e.k === "keys" && e.field === "email" && e.n > 0)).toBe(true);
  const wire = JSON.stringify(frames) + JSON.stringify(beacons);
  for (const secret of ["someone@example.org", "hunter2", "s3cret", '"pw"', '"secret"']) expect(wire).not.toContain(secret);
});
