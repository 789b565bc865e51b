// Socket's own rules against a local WebSocket server that misbehaves on purpose: a path that
// stops answering is dropped and reconnected; 4401 ends in signedOut with no retry; 1012 retries.
import { afterEach, expect, test } from "bun:test";
import { Socket, type SocketState } from "./socket.ts";

let server: { stop(closeActive?: boolean): unknown } | undefined;
afterEach(() => server?.stop(true));

/** A server that counts connections and does what `behave` says with each. */
function serve(behave: (ws: Bun.ServerWebSocket<unknown>, n: number) => void) {
  let n = 0;
  const srv = Bun.serve({
    port: 0,
    fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("no", { status: 400 })),
    websocket: { open: (ws) => behave(ws, ++n), message: () => undefined }, // never answers a frame
  });
  server = srv;
  return { url: `ws://127.0.0.1:${srv.port}/ws`, count: () => n };
}

function socket(url: string, states: SocketState[]) {
  return new Socket({
    url: async () => url,
    format: "json",
    onFrame: () => undefined,
    onState: (s) => states.push(s),
    onOpen: () => undefined,
    backoff: { baseMs: 20, maxMs: 100 },
    requestTimeoutMs: 200,
    pingEveryMs: 100,
  });
}

/** The second open as the client saw it (the server counts a connection before the client's open event). */
const reopened = (states: SocketState[]) => states.filter((x) => x === "open").length >= 2;

const until = async (cond: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await Bun.sleep(10);
  }
};

test("a connection whose pings go unanswered is dropped and opened again", async () => {
  const srv = serve(() => undefined);
  const states: SocketState[] = [];
  const s = socket(srv.url, states);
  s.start();
  await until(() => srv.count() >= 2 && reopened(states));
  s.stop();
  expect(states.slice(0, 3)).toEqual(["open", "reconnecting", "open"]);
});

test("4401 ends in signedOut and is not retried; 1012 is", async () => {
  const revoked = serve((ws) => ws.close(4401, "revoked"));
  const states: SocketState[] = [];
  const s = socket(revoked.url, states);
  s.start();
  await until(() => states.includes("signedOut"));
  await Bun.sleep(300);
  expect(revoked.count()).toBe(1);
  s.stop();
  server!.stop(true);

  const restarting = serve((ws, n) => n === 1 && ws.close(1012, "restart"));
  const states2: SocketState[] = [];
  const s2 = socket(restarting.url, states2);
  s2.start();
  await until(() => restarting.count() >= 2 && reopened(states2));
  s2.stop();
  expect(states2.slice(0, 3)).toEqual(["open", "reconnecting", "open"]);
});
