// The Socket.IO peer of bench/messaging.ts: one Node process of a Socket.IO 4 server with
// @socket.io/redis-streams-adapter (default options: one stream, XREAD COUNT 100), run as two
// processes against one redis-server. It speaks the CONTRACT.md room frames inside one Socket.IO
// event, "f" (a JSON string each way), so bench/ws-load.ts drives it with the same frames:
// join → socket.join(room) + joined; send → io.to(room).emit(msg frame) (local sockets, and the
// other process through the Redis stream) + ack. No auth beyond the token's shape, no storage;
// seq is per process, not per room across processes (Socket.IO has no such ordering).
// Runs on Node (plain JS: Node 20 has no type stripping). Prints its port on stdout.
// Usage (normally started by bench/messaging.ts): node bench/socketio-server.mjs <redisPort> [port]
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { Redis } from "ioredis";

const redisPort = Number(process.argv[2]);
if (!redisPort) throw new Error("usage: node bench/socketio-server.mjs <redisPort> [port]");
const redis = new Redis({ host: "127.0.0.1", port: redisPort });
const http = createServer();
const io = new Server(http, { adapter: createAdapter(redis), transports: ["websocket"], serveClient: false });

const rooms = new Map();
let nextId = 1;
const pid = process.pid;

io.use((socket, next) => {
  const token = String(socket.handshake.auth?.token ?? socket.handshake.query?.token ?? "");
  if (!/^u\d+$/.test(token)) return next(new Error("UNAUTHENTICATED"));
  const userId = Number(token.slice(1));
  socket.data.user = { userId, userName: `user${userId}` };
  next();
});

io.on("connection", (socket) => {
  socket.on("f", (raw) => {
    let f;
    try {
      f = JSON.parse(String(raw));
    } catch {
      socket.emit("f", JSON.stringify({ op: "error", code: "BAD_REQUEST", message: "not JSON" }));
      return;
    }
    const room = String(f.room ?? "");
    if (f.op === "join") {
      socket.join(room);
      let r = rooms.get(room);
      if (!r) rooms.set(room, (r = { seq: 0 }));
      socket.emit("f", JSON.stringify({ op: "joined", ref: f.ref, room, conv: `room:${room}`, onlineCount: 0, lastSeq: r.seq }));
    } else if (f.op === "send") {
      let r = rooms.get(room);
      if (!r) rooms.set(room, (r = { seq: 0 }));
      const ts = Date.now();
      const m = { id: `${pid}-${nextId++}`, conv: `room:${room}`, seq: ++r.seq, from: socket.data.user, body: String(f.body), ts };
      io.to(room).emit("f", JSON.stringify({ op: "msg", ...m }));
      socket.emit("f", JSON.stringify({ op: "ack", ref: f.ref, id: m.id, conv: m.conv, seq: m.seq, ts }));
    } else {
      socket.emit("f", JSON.stringify({ op: "error", ref: f.ref, code: "BAD_REQUEST", message: "unknown op" }));
    }
  });
});

http.listen(Number(process.argv[3] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`${http.address().port}\n`);
});
process.on("SIGTERM", () => {
  io.close();
  redis.disconnect();
  process.exit(0);
});
