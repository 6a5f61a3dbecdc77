// Where an event-to-pixel sample's time goes (docs/PERFORMANCE.md "Latest results"): starts
// `microadjust serve --demo` on a free port, opens the demo in Chromium with the page's WebSocket,
// requestAnimationFrame and `microadjust:patch` instrumented, rests the pointer on products until
// the hover intent fires, and prints per hover the ms after the intent batch's `send` at which the
// `ack` and the `patch` arrived, the patcher's frame ran and the report came (with the page's `ms`).
//
//   node bench/experiments/pixel_breakdown.mjs [--visits 12]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import net from "node:net";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";

const arg = (n, d) => { const i = process.argv.indexOf(`--${n}`); return i >= 0 ? process.argv[i + 1] : d; };
const visits = Number(arg("visits", 12));
const port = await new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); });
const data = fs.mkdtempSync(path.join(os.tmpdir(), "ma-pixel-"));
const srv = spawn(".venv/bin/microadjust", ["serve", "--demo", "--host", "127.0.0.1", "--port", String(port), "--data-dir", data], { stdio: "ignore" });
for (let i = 0; i < 100; i++) {
  const up = await new Promise((r) => { const s = net.connect(port, "127.0.0.1"); s.once("connect", () => { s.destroy(); r(true); }); s.once("error", () => r(false)); });
  if (up) break;
  await new Promise((r) => setTimeout(r, 100));
}
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"] });
try {
  for (let v = 0; v < visits; v++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    await page.addInitScript(() => {
      window.__log = [];
      const t = () => performance.now();
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (d) {
        if (String(d).includes('"intent"')) window.__log.push(["send", t()]);
        if (!this.__watched) {
          this.__watched = 1;
          this.addEventListener("message", (e) => {
            const s = String(e.data);
            if (s.includes('"patch"')) window.__log.push(["patch", t()]);
            else if (s.includes('"ack"')) window.__log.push(["ack", t()]);
          });
        }
        return send.call(this, d);
      };
      const raf = window.requestAnimationFrame.bind(window);
      window.requestAnimationFrame = (cb) => raf((ts) => { window.__log.push(["frame", t()]); cb(ts); });
      document.addEventListener("microadjust:patch", (e) => window.__log.push(["report", t(), e.detail.ms]));
    });
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForTimeout(1500);
    const items = await page.$$eval('[data-ma-slot="grid"] [data-ma-item]', (els) => els.map((e) => e.dataset.maItem));
    for (const item of items.slice(0, 3)) {
      await page.evaluate(() => (window.__log = []));
      await page.hover(`[data-ma-item="${item}"]`);
      await page.waitForTimeout(2600);
      const log = await page.evaluate(() => window.__log);
      const s = log.find((x) => x[0] === "send");
      if (!s) continue;
      const first = (k) => log.find((x) => x[0] === k && x[1] >= s[1]);
      const parts = ["ack", "patch", "frame", "report"].map((k) => first(k)).filter(Boolean);
      console.log(parts.map((x) => `${x[0]} +${(x[1] - s[1]).toFixed(1)}${x[2] !== undefined ? ` (ms ${x[2]})` : ""}`).join("  "));
    }
    await ctx.close();
  }
} finally {
  await browser.close();
  srv.kill();
  fs.rmSync(data, { recursive: true, force: true });
}
