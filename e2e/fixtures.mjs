// Shared Playwright fixtures: a real `microadjust serve --demo` process per test file, on a free
// port, with its own data directory and admin token, that a test can stop and restart.
import { test as base, expect } from "@playwright/test";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = process.env.MICROADJUST_BIN || join(ROOT, ".venv", "bin", "microadjust");

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(url, proc, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}: ${proc.output}`);
    try {
      const r = await fetch(url + "/readyz");
      if (r.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server not ready after ${timeoutMs} ms: ${proc.output}`);
}

/**
 * A running demo server. `extraArgs` are passed to `microadjust serve --demo`.
 * Returns {url, port, token, dataDir, stop(), restart(), admin(path, init)}.
 */
export async function startServer(extraArgs = [], { port } = {}) {
  port = port || (await freePort());
  const dataDir = mkdtempSync(join(tmpdir(), "ma-e2e-"));
  const token = "e2e-" + Math.random().toString(36).slice(2);
  const url = `http://127.0.0.1:${port}`;
  const server = { url, port, token, dataDir, proc: null };
  server.start = async () => {
    const proc = spawn(
      BIN,
      ["serve", "--demo", "--host", "127.0.0.1", "--port", String(port), "--admin-token", token, "--data-dir", dataDir, ...extraArgs],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    );
    proc.output = "";
    const keep = (d) => {
      proc.output = (proc.output + d.toString()).slice(-4000);
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
    server.proc = proc;
    await waitReady(url, proc);
  };
  server.stop = async () => {
    const proc = server.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
  server.restart = async () => {
    await server.stop();
    await server.start();
  };
  server.admin = async (path, init = {}) => {
    const r = await fetch(url + path, {
      ...init,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...(init.headers || {}) },
    });
    const body = await r.json();
    return { status: r.status, body };
  };
  server.cleanup = async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  await server.start();
  return server;
}

/**
 * `server`: one demo server per Playwright worker, shared by the specs it runs. Tests stay
 * independent because each gets a fresh browser context, hence a fresh visitor and session.
 * A test that stops or restarts the server must use its own `startServer()` instead.
 */
export const test = base.extend({
  server: [
    async ({}, use) => {
      const server = await startServer();
      await use(server);
      await server.cleanup();
    },
    { scope: "worker" },
  ],
});

export { expect };

/** Collects the page's `microadjust:patch` reports (docs/ARCHITECTURE.md, tracker test hooks). */
export async function recordPatches(page) {
  await page.addInitScript(() => {
    window.__maPatches = [];
    document.addEventListener("microadjust:patch", (e) => window.__maPatches.push(e.detail));
  });
}

/** The page's socket traffic on `/v1/stream`, parsed: `sent` and `received` messages. */
export function wire(page) {
  const w = { sent: [], received: [] };
  page.on("websocket", (ws) => {
    if (!ws.url().includes("/v1/stream")) return;
    ws.on("framesent", (f) => w.sent.push(JSON.parse(f.payload)));
    ws.on("framereceived", (f) => w.received.push(JSON.parse(f.payload)));
  });
  return w;
}

/** The highest cumulative ack the page received (PROTOCOL §4). */
export const acked = (w) => Math.max(0, ...w.received.filter((m) => m.t === "ack").map((m) => m.seq));
