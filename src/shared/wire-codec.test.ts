// The client-frame decoder: plain MessagePack only, bounded depth, exact length.
import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { pack } from "./codec.ts";
import { decodeJson, decodeMsgpack, MAX_DEPTH, WireDecodeError } from "./wire-codec.ts";

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s/g, ""), "hex"));
const refused = (b: Uint8Array) => expect(() => decodeMsgpack(b)).toThrow(WireDecodeError);

describe("decodeMsgpack", () => {
  test("plain values round-trip through msgpackr's encoding", () => {
    const v = { op: "send", room: "r", body: "héllo ☃ 𝄞", n: -5, big: 2 ** 53 - 1, neg: -(2 ** 53 - 1), f: 1.5, t: true, z: null, a: [1, [2, [3]]], m: { k: "v" } };
    expect(decodeMsgpack(pack(v))).toEqual(v);
    expect(decodeMsgpack(pack(new Uint8Array([1, 2, 3])))).toEqual(new Uint8Array([1, 2, 3]));
    for (const n of [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1])
      expect(decodeMsgpack(pack(n))).toBe(n);
    expect(decodeMsgpack(hex("ca3fc00000"))).toBe(1.5);
  });

  test("strings of every length class decode exactly (the ASCII path up to 32 bytes, the TextDecoder beyond)", () => {
    const samples = ["", "a", "x".repeat(31), "y".repeat(32), "z".repeat(33), "\u007f", "é", "a".repeat(31) + "é", "€".repeat(10), "😀", "héllo ☃ 𝄞".repeat(5)];
    for (const str of samples) expect(decodeMsgpack(pack({ [str]: str }))).toEqual({ [str]: str });
    // Invalid UTF-8 inside a short string, anywhere, is still refused: a lone continuation byte,
    // 0xff, an overlong NUL, a truncated sequence, an encoded surrogate.
    const str8 = (bytes: string) => {
      const n = bytes.length / 2;
      return (n < 32 ? (0xa0 | n).toString(16) : `d9${n.toString(16).padStart(2, "0")}`) + bytes;
    };
    expect(decodeMsgpack(hex(str8("61".repeat(3))))).toBe("aaa");
    for (const bad of ["80", "ff", "c080", "e282", "eda080"])
      for (const at of [0, 5, 28, 40]) refused(hex(str8("61".repeat(at) + bad)));
  });

  test("the issue's crashing ping (structured-clone 0x69/0x70 ext) is refused", () => {
    refused(hex("82a26f70a470696e67a3726566d6690000000091d67000000000"));
  });

  test("every extension type is refused: big integers (0x42), timestamps, records, any ext", () => {
    refused(hex("82a26f70a470696e67a3726566") as Uint8Array); // truncated map
    const bigRef = new Packr({ useBigIntExtension: true } as never).pack({ op: "ping", ref: 2n ** 100n });
    refused(bigRef);
    refused(new Packr().pack({ op: "ping", ref: new Date(0) }));
    refused(new Packr({ useRecords: true }).pack([{ op: "ping" }, { op: "ping" }]));
    for (const h of ["d40100", "d5010000", "d601" + "00".repeat(4), "d701" + "00".repeat(8), "d801" + "00".repeat(16), "c70101" + "00", "c8000101" + "00", "c90000000101" + "00", "c1"])
      refused(hex(h));
  });

  test("integers beyond ±(2^53-1), non-string keys, bad UTF-8, trailing bytes and lying lengths are refused", () => {
    refused(hex("cf0020000000000000")); // 2^53
    refused(hex("d3ffe0000000000000")); // -2^53
    expect(decodeMsgpack(hex("cf001fffffffffffff"))).toBe(2 ** 53 - 1);
    refused(hex("810102")); // {1: 2}
    refused(hex("a2c328")); // invalid UTF-8
    refused(hex("a3eda080")); // UTF-8 of a lone surrogate
    refused(hex("c0c0"));
    refused(hex("ddffffffff")); // array of 2^32-1 elements in 5 bytes
    refused(hex("dfffffffff"));
    refused(hex("dbffffffff61"));
  });

  test("nesting is bounded; __proto__ is an ordinary key", () => {
    const nest = (n: number) => Uint8Array.from([...Array(n).fill(0x91), 0xc0]);
    expect(decodeMsgpack(nest(MAX_DEPTH))).toBeArray();
    refused(nest(MAX_DEPTH + 1));
    refused(nest(100_000));
    const o = decodeMsgpack(hex("81a95f5f70726f746f5f5f81a178c3")) as Record<string, unknown>;
    expect(Object.getPrototypeOf(o)).toBeNull();
    expect(o.__proto__).toEqual({ x: true } as never);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe("decodeJson", () => {
  test("JSON within the depth bound parses; deeper or invalid is refused", () => {
    expect(decodeJson('{"op":"ping","ref":1}')).toEqual({ op: "ping", ref: 1 });
    expect(() => decodeJson("[".repeat(MAX_DEPTH + 1) + "]".repeat(MAX_DEPTH + 1))).toThrow(WireDecodeError);
    expect(() => decodeJson("[".repeat(20_000))).toThrow(WireDecodeError);
    expect(() => decodeJson("{")).toThrow(WireDecodeError);
  });

  test("the depth bound counts objects and arrays alike, in any field and at any position", () => {
    // depth n: n nested containers, alternating object and array, the deep one after other fields
    // (an empty container is a level too, so those siblings stop one level above the deepest).
    const nest = (n: number): string => {
      if (n === 0) return "1";
      const empty = n >= 2;
      return n % 2 ? `{"a":1,${empty ? '"b":[],' : ""}"z":${nest(n - 1)}}` : `[0,${empty ? "{}," : ""}${nest(n - 1)}]`;
    };
    expect(() => decodeJson(`[${"[".repeat(MAX_DEPTH - 1)}${"]".repeat(MAX_DEPTH - 1)},[]]`)).not.toThrow();
    expect(() => decodeJson(`[1,${"[".repeat(MAX_DEPTH)}${"]".repeat(MAX_DEPTH)}]`)).toThrow(WireDecodeError);
    expect(decodeJson(nest(MAX_DEPTH))).toBeObject();
    expect(() => decodeJson(nest(MAX_DEPTH + 1))).toThrow(WireDecodeError);
    const objects = (n: number): string => (n === 0 ? "null" : `{"k":${objects(n - 1)}}`);
    expect(decodeJson(objects(MAX_DEPTH))).toBeObject();
    expect(() => decodeJson(objects(MAX_DEPTH + 1))).toThrow(WireDecodeError);
    // A "__proto__" key is an own key of the parsed object and is walked like any other.
    expect(() => decodeJson(`{"__proto__":${objects(MAX_DEPTH)}}`)).toThrow(WireDecodeError);
    expect(decodeJson(`{"__proto__":${objects(MAX_DEPTH - 1)}}`)).toBeObject();
  });
});
