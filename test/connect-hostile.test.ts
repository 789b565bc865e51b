// Issue 10 item 1 and the WebSocket part of item 5, over real WebSockets against a connect
// instance (fake logic): frames that used to end the process, the v1.1 ref and text rules, and
// the close code of frames above 1 MiB and of text frames that are not UTF-8.
import { connect as tcpConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CLOSE, LIMITS } from "../src/shared/protocol.ts";
import { WsClient, startConnect, type TestConnect } from "./support/connect.ts";

let c: TestConnect;
const clients: WsClient[] = [];

beforeAll(async () => {
  c = await startConnect();
});
afterAll(async () => {
  for (const cl of clients) cl.ws.close();
  await c.stop();
});

async function user(format?: "json" | "msgpack") {
  const u = c.logic.user();
  const ws = await WsClient.open(c.wsUrl(u.token, format));
  clients.push(ws);
  return { ...u, ws };
}

const hex = (h: string) => Uint8Array.from(Buffer.from(h, "hex"));
/** The ping: {op:"ping", ref: <structured-clone id 0x69 around [pointer 0x70]>}. */
const CLONE_REF_PING = hex("82a26f70a470696e67a3726566d6690000000091d67000000000");
/** fixext 16 of type 0x42: msgpackr's 128-bit integer. */
const BIG_REF = "a3726566d842" + "ff".repeat(16);
const BIG_REF_PING = hex("82a26f70a470696e67" + BIG_REF);
// {op:"send", room:"r1", body:"hi", ref:<0x42>}
const BIG_REF_SEND = hex("84a26f70a473656e64a4726f6f6da27231a4626f6479a26869" + BIG_REF);

describe("frames that used to end the process", () => {
  test("the structured-clone ping and a 128-bit-integer ref are BAD_REQUEST without echo; the socket and a bystander stay up", async () => {
    const bystander = await user();
    const { ws } = await user("msgpack");
    for (const frame of [CLONE_REF_PING, BIG_REF_PING]) {
      ws.raw(frame);
      const err = await ws.op("error");
      expect(err).toEqual({ op: "error", code: "BAD_REQUEST", message: expect.any(String) });
    }
    ws.send({ op: "ping", ref: 1 }, true);
    expect((await ws.op("pong", 1)).ts).toBeNumber();
    bystander.ws.send({ op: "ping", ref: "b" });
    await bystander.ws.op("pong", "b");
  });

  test("a send with a 128-bit-integer ref is refused before it is stored (never acked-then-lost)", async () => {
    const { ws, user: u } = await user("msgpack");
    const before = c.logic.sendBatches.flat().filter((i) => i.from.userId === u.userId).length;
    ws.raw(BIG_REF_SEND);
    const err = await ws.op("error");
    expect(err.code).toBe("BAD_REQUEST");
    expect(err.ref).toBeUndefined();
    ws.send({ op: "send", room: "r1", body: "hi", ref: 9 }, true);
    await ws.op("ack", 9);
    expect(c.logic.sendBatches.flat().filter((i) => i.from.userId === u.userId)).toHaveLength(before + 1);
  });

  test("other extension types (timestamp ext -1, any fixext/ext) are BAD_REQUEST", async () => {
    const { ws } = await user("msgpack");
    for (const ext of ["d6ff00000000", "c70105" + "00", "d40700"]) {
      ws.raw(hex("82a26f70a470696e67a3726566" + ext));
      expect((await ws.op("error")).code).toBe("BAD_REQUEST");
    }
  });
});

describe("ref (v1.1)", () => {
  test("a string of at most 64 characters or a safe integer is echoed; anything else is BAD_REQUEST without echo", async () => {
    const { ws } = await user();
    for (const ref of ["x".repeat(64), -(2 ** 53 - 1), 0]) {
      ws.send({ op: "ping", ref });
      await ws.op("pong", ref);
    }
    for (const ref of ["x".repeat(65), 2 ** 53, 1.5, true, [1], { a: 1 }]) {
      ws.send({ op: "ping", ref });
      const err = await ws.op("error");
      expect(err).toEqual({ op: "error", code: "BAD_REQUEST", message: expect.stringContaining("ref") });
    }
    ws.raw('{"op":"ping","ref":"\\ud800"}');
    expect(await ws.op("error")).not.toHaveProperty("ref");
  });
});

describe("text (v1.1)", () => {
  test("a lone surrogate in body, clientMsgId or conv is BAD_REQUEST and nothing is stored", async () => {
    const { ws, user: u } = await user();
    ws.raw('{"op":"send","room":"r2","body":"A\\ud800B","ref":1}');
    expect((await ws.op("error", 1)).code).toBe("BAD_REQUEST");
    ws.raw('{"op":"send","room":"r2","body":"ok","clientMsgId":"\\udfff","ref":2}');
    expect((await ws.op("error", 2)).code).toBe("BAD_REQUEST");
    ws.raw('{"op":"sync","conv":"room:\\ud800","afterSeq":0,"ref":3}');
    expect((await ws.op("error", 3)).code).toBe("BAD_REQUEST");
    expect(c.logic.sendBatches.flat().filter((i) => i.from.userId === u.userId)).toHaveLength(0);
    // A surrogate pair is a valid character.
    ws.raw('{"op":"send","room":"r2","body":"\\ud83d\\ude00","ref":4}');
    await ws.op("ack", 4);
  });
});

describe("frame size (v1.1)", () => {
  for (const size of [(1 << 20) + 1, 4 << 20]) {
    test(`a ${size}-byte frame closes with 4413 (not 1009)`, async () => {
      const { ws } = await user();
      ws.raw(JSON.stringify({ op: "ping", pad: "x".repeat(size - 22) }));
      expect((await ws.closed).code).toBe(CLOSE.FRAME_TOO_LARGE);
    });
  }

  test("a frame above Bun's 16 MiB cap is refused by Bun at its header (1009), documented in the README", async () => {
    const { ws } = await user("msgpack");
    ws.raw(new Uint8Array((16 << 20) + 1));
    expect((await ws.closed).code).toBe(1009);
    expect(LIMITS.maxFrameBytes).toBe(16 * 1024);
  });
});

/**
 * Sends one masked text frame holding `payload` (under 126 bytes) as it is (a WebSocket client API
 * would refuse bytes that are not UTF-8) after a hand-made handshake; resolves to the close code
 * the server's close frame carries. Rejects if the upgrade is refused, the connection ends without
 * a close frame, or nothing comes within 5 s; the socket is destroyed either way.
 */
function rawTextFrameCloseCode(wsUrl: string, payload: Uint8Array): Promise<number> {
  if (payload.length >= 126) throw new Error("payload must be under 126 bytes");
  const url = new URL(wsUrl);
  return new Promise((resolve, reject) => {
    const sock = tcpConnect(Number(url.port), url.hostname);
    const settle = (f: () => void) => {
      clearTimeout(timer);
      sock.destroy();
      f();
    };
    const timer = setTimeout(() => settle(() => reject(new Error("no close frame within 5 s"))), 5000);
    let buf = Buffer.alloc(0);
    let open = false;
    sock.on("error", (e) => settle(() => reject(e)));
    sock.on("close", () => settle(() => reject(new Error("connection ended without a close frame"))));
    sock.on("connect", () =>
      sock.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`),
    );
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const status = buf.subarray(0, end).toString().split("\r\n")[0];
        if (!status.includes(" 101 ")) return settle(() => reject(new Error(`upgrade refused: ${status}`)));
        open = true;
        buf = buf.subarray(end + 4);
        const mask = Buffer.from([1, 2, 3, 4]);
        sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]));
      }
      // Server frames are unmasked; skip any before the close frame (opcode 8).
      while (buf.length >= 2) {
        const len = buf[1] & 0x7f;
        if (len === 127) return settle(() => reject(new Error("unexpected 64-bit frame length")));
        const head = len === 126 ? 4 : 2;
        if (buf.length < head) return;
        const size = len === 126 ? buf.readUInt16BE(2) : len;
        if (buf.length < head + size) return;
        if ((buf[0] & 0x0f) === 8) {
          if (size < 2) return settle(() => reject(new Error("close frame without a code")));
          const code = buf.readUInt16BE(head);
          return settle(() => resolve(code));
        }
        buf = buf.subarray(head + size);
      }
    });
  });
}

describe("text frames that are not UTF-8", () => {
  test("are refused by Bun with 1007 (RFC 6455), documented in the README; the instance serves others", async () => {
    const u = c.logic.user();
    // {"op":"ping","ref":"<0xff 0xfe>"}: well-formed JSON around two bytes that are not UTF-8.
    const bad = Uint8Array.from([...Buffer.from('{"op":"ping","ref":"'), 0xff, 0xfe, ...Buffer.from('"}')]);
    expect(await rawTextFrameCloseCode(c.wsUrl(u.token), bad)).toBe(1007);
    const other = await user();
    other.ws.raw('{"op":"ping","ref":1}');
    await other.ws.op("pong", 1);
  });
});
