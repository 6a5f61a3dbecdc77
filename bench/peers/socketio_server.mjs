// The Socket.IO peer: what a Node team would pick, doing the benchmark workload with the same
// logic as the floor (bench/peers/floor_logic.mjs). Frames travel as Socket.IO "message" events
// carrying the PROTOCOL.md JSON text, over the websocket transport only (no long-polling), so the
// difference to the floor is Socket.IO's own framing, packet parsing and bookkeeping.
// Settings are Socket.IO's defaults except the path, the origin check and the frame limit.
//
//   node bench/peers/socketio_server.mjs --port 9102 [--host 127.0.0.1]

import http from "node:http";
import { Server } from "socket.io";
import { FloorSession } from "./floor_logic.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const host = args.host ?? "127.0.0.1";
const port = Number(args.port ?? 9102);
const SITE = "demo";
const ORIGINS = new Set([`http://127.0.0.1:${port}`, `http://localhost:${port}`]);

const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: "/v1/stream",
  transports: ["websocket"],
  maxHttpBufferSize: 65536,
  // PROTOCOL §2.1: site and Origin are checked before the upgrade is accepted.
  allowRequest: (req, cb) => {
    const url = new URL(req.url, "http://x");
    cb(null, url.searchParams.get("site") === SITE && ORIGINS.has(req.headers.origin));
  },
});

io.on("connection", (socket) => {
  const v = socket.handshake.query.v;
  if (v !== undefined && v !== "1") {
    socket.disconnect(true);
    return;
  }
  const session = new FloorSession(SITE, (text) => socket.send(text), () => socket.disconnect(true));
  socket.on("message", (text) => {
    if (typeof text !== "string") return socket.disconnect(true);
    session.onText(text);
  });
});

httpServer.listen(port, host, () => console.log(`socket.io peer listening on ${host}:${port}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
