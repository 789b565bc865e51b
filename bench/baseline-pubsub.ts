// The ceiling for bench/messaging.ts: one bare Bun process doing room pub/sub with the same
// frames as bunchat's connect tier, and nothing else (no auth, no storage, no other process).
// join → ws.subscribe(room) + joined; send → server.publish(room, msg frame) + ack.
// The token `u<userId>` names the user. Prints its port on stdout, stops on SIGTERM.
// Usage (normally started by bench/messaging.ts): bun bench/baseline-pubsub.ts [port] [hostname]

interface User {
  userId: number;
  userName: string;
}

const rooms = new Map<string, { seq: number; online: number }>();
let nextId = 1n;

const server = Bun.serve<{ user: User; rooms: Set<string> }>({
  port: Number(process.argv[2] ?? 0),
  hostname: process.argv[3] ?? "127.0.0.1",
  fetch(req, srv) {
    const url = new URL(req.url);
    const token = url.searchParams.get("token") ?? "";
    if (url.pathname !== "/ws" || !/^u\d+$/.test(token)) return new Response("no", { status: 401 });
    const userId = Number(token.slice(1));
    if (srv.upgrade(req, { data: { user: { userId, userName: `user${userId}` }, rooms: new Set() } })) return;
    return new Response("upgrade failed", { status: 400 });
  },
  websocket: {
    message(ws, raw) {
      let f: Record<string, any>;
      try {
        f = JSON.parse(String(raw));
      } catch {
        ws.send(JSON.stringify({ op: "error", code: "BAD_REQUEST", message: "not JSON" }));
        return;
      }
      const room = String(f.room ?? "");
      if (f.op === "join") {
        let r = rooms.get(room);
        if (!r) rooms.set(room, (r = { seq: 0, online: 0 }));
        if (!ws.data.rooms.has(room)) {
          ws.data.rooms.add(room);
          ws.subscribe(room);
          r.online++;
        }
        ws.send(JSON.stringify({ op: "joined", ref: f.ref, room, conv: `room:${room}`, onlineCount: r.online, lastSeq: r.seq }));
      } else if (f.op === "send") {
        const r = rooms.get(room) ?? { seq: 0, online: 0 };
        rooms.set(room, r);
        const ts = Date.now();
        const m = { id: String(nextId++), conv: `room:${room}`, seq: ++r.seq, from: ws.data.user, body: String(f.body), ts };
        server.publish(room, JSON.stringify({ op: "msg", ...m }));
        ws.send(JSON.stringify({ op: "ack", ref: f.ref, id: m.id, conv: m.conv, seq: m.seq, ts }));
      } else if (f.op === "ping") {
        ws.send(JSON.stringify({ op: "pong", ref: f.ref, ts: Date.now() }));
      } else {
        ws.send(JSON.stringify({ op: "error", ref: f.ref, code: "BAD_REQUEST", message: "unknown op" }));
      }
    },
    close(ws) {
      for (const room of ws.data.rooms) {
        const r = rooms.get(room);
        if (r) r.online--;
      }
    },
  },
});

process.stdout.write(`${server.port}\n`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
