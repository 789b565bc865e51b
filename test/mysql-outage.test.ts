// MySQL stopped for 10 s while messages flow: sends keep being accepted, live delivery goes on,
// history stays complete (from the pending set), and once MySQL is back every acknowledged
// message is persisted exactly once.
import { afterAll, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "./support/cluster.ts";
import { WsClient } from "./support/connect.ts";
import { eventually, http, registerUser, uniqueName } from "./support/http.ts";
import { getInfra } from "./support/infra.ts";

let c: TestCluster | undefined;
afterAll(() => c?.stop());

test("a 10 s MySQL outage under traffic loses nothing and does not pause live delivery", async () => {
  c = await startCluster({ logic: 1, api: 1, connect: 1, task: 1, config: { rateLimitPerSec: 1000, rateLimitBurst: 1000 } });
  const infra = await getInfra();
  const base = c.apiUrl();
  const room = uniqueName("db");
  const [s, r] = await Promise.all([registerUser(base), registerUser(base)]);
  const ws = await WsClient.open(c.wsUrl(0, r.token));
  ws.send({ op: "join", room, ref: "j" });
  await ws.op("joined", "j");

  const acked: { id: string; seq: number }[] = [];
  const sendOne = async (i: number) => {
    const res = await http(base, "POST", `/api/rooms/${room}/messages`, { token: s.token, body: { body: `x${i}` } });
    expect(res.status).toBe(202);
    acked.push(res.body);
    // Delivered live within a second, MySQL up or down.
    const m = await ws.op("msg", undefined, 1000);
    expect(m.seq).toBe(res.body.seq);
  };
  let i = 0;
  for (; i < 10; i++) await sendOne(i);

  await infra.mysql.stop();
  try {
    const downUntil = Date.now() + 10_000;
    while (Date.now() < downUntil) {
      await sendOne(i++);
      await Bun.sleep(50);
    }
    // History has no hole while MySQL is down.
    const h = await http(base, "GET", `/api/conversations/room:${room}/messages?afterSeq=10&limit=200`, { token: r.token });
    expect(h.status).toBe(200);
    expect(h.body.messages.map((m: { seq: number }) => m.seq)).toEqual(acked.slice(10).map((a) => a.seq));
  } finally {
    await infra.mysql.start();
  }
  for (let j = 0; j < 10; j++) await sendOne(i++);

  await eventually(async () => {
    const [rows] = await c!.db.pool.query("SELECT id, seq FROM messages WHERE conv = ? ORDER BY seq", [`room:${room}`]);
    return (rows as unknown[]).length === acked.length;
  }, 30_000);
  const [rows] = await c.db.pool.query("SELECT id, seq FROM messages WHERE conv = ? ORDER BY seq", [`room:${room}`]);
  expect((rows as { id: string; seq: number }[]).map((x) => `${x.seq}:${x.id}`)).toEqual(acked.map((a) => `${a.seq}:${a.id}`));
  // History pages (at most 200 a page; a fast box sends more than 200 in the 10 s).
  const seqs: number[] = [];
  for (let after = 0; ; ) {
    const h = await http(base, "GET", `/api/conversations/room:${room}/messages?afterSeq=${after}&limit=200`, { token: r.token });
    expect(h.status).toBe(200);
    const page = h.body.messages.map((m: { seq: number }) => m.seq);
    if (!page.length) break;
    seqs.push(...page);
    after = page[page.length - 1];
  }
  expect(seqs).toEqual(acked.map((a) => a.seq));
  ws.ws.close();
}, 90_000);
