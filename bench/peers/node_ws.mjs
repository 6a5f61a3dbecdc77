// The Node floor: a minimal `ws` server doing the benchmark workload (bench/peers/floor_logic.mjs).
// It is what the machine can do for this workload with the least machinery, so every other server
// is reported as a ratio to it. Same checks as the product's gateway where the workload needs them:
// PROTOCOL §2.1 site and Origin before the upgrade, version check, frame limit, text frames only.
//
//   node bench/peers/node_ws.mjs --port 9101 [--host 127.0.0.1]

import http from "node:http";
import { WebSocketServer } from "ws";
import { FloorSession } from "./floor_logic.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const host = args.host ?? "127.0.0.1";
const port = Number(args.port ?? 9101);
const SITE = "demo";
const ORIGINS = new Set([`http://127.0.0.1:${port}`, `http://localhost:${port}`]);

const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "text/plain" });
  res.end(req.url === "/healthz" ? "ok" : "not found");
});
// permessage-deflate off, as PROTOCOL §1 requires (and as `ws` defaults to on the server side).
const wss = new WebSocketServer({ noServer: true, maxPayload: 65536, perMessageDeflate: false });

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/v1/stream" || url.searchParams.get("site") !== SITE || !ORIGINS.has(req.headers.origin)) {
    socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const v = url.searchParams.get("v");
    if (v !== null && v !== "1") {
      ws.close(4001, `unsupported protocol version ${v.slice(0, 16)}; server speaks 1`);
      return;
    }
    const session = new FloorSession(SITE, (text) => ws.send(text), (code, reason) => ws.close(code, reason));
    ws.on("message", (data, isBinary) => {
      if (isBinary) return ws.close(1003, "binary frames not supported");
      session.onText(data.toString());
    });
    ws.on("error", () => ws.terminate());
  });
});

server.listen(port, host, () => console.log(`node-ws floor listening on ${host}:${port}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
