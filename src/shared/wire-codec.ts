// Decoding of untrusted client frames (WebSocket, CONTRACT.md v1.1): plain data only. Not the
// gRPC payload codec (src/shared/codec.ts, msgpackr), which trusts its peer and understands
// msgpackr's extensions (records, structured-clone references 0x69/0x70, big integers 0x42,
// timestamps): a value built from those can decode and then fail to encode again, and a client
// frame must never be able to do that.
//
// The MessagePack decoder here accepts nil, booleans, integers, floats, strings (valid UTF-8),
// binary, arrays and maps whose keys are strings, nested at most MAX_DEPTH deep; anything else
// (every ext and fixext type, the reserved byte 0xc1, non-string map keys, integers outside
// ±(2^53−1), trailing bytes, truncation, invalid UTF-8) is a WireDecodeError. Maps decode to
// objects without a prototype, so a "__proto__" key is just a key.

/** Arrays and maps may nest this deep (the frame itself is depth 1); deeper is refused. */
export const MAX_DEPTH = 32;

/** A client frame that is not plain data; the message says why (safe to send back). */
export class WireDecodeError extends Error {
  override readonly name = "WireDecodeError";
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes one MessagePack value that must fill `bytes` exactly.
 * Returns plain JS data: null, boolean, number (safe integers and floats), string, Uint8Array,
 * arrays, and null-prototype objects. Throws WireDecodeError for anything else (see above).
 */
export function decodeMsgpack(bytes: Uint8Array): unknown {
  const r = new Reader(bytes);
  const v = r.value(1);
  if (r.pos !== bytes.length) throw new WireDecodeError("trailing bytes after the MessagePack value");
  return v;
}

/**
 * Parses a JSON text frame and checks it nests at most MAX_DEPTH deep (JSON.parse yields plain
 * data only). Throws WireDecodeError if the text is not JSON or nests deeper.
 */
export function decodeJson(text: string): unknown {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new WireDecodeError("frame is not valid JSON");
  }
  if (depthOver(v, MAX_DEPTH)) throw new WireDecodeError(`frame nests deeper than ${MAX_DEPTH} levels`);
  return v;
}

/**
 * True if v (JSON.parse output) has arrays or objects nested more than `max` deep (a scalar is
 * depth 0). Walks without allocating (no Object.values per object): it runs on every JSON frame,
 * and on every HTTP body (src/api/request.ts, with MAX_DEPTH too).
 */
export function depthOver(v: unknown, max: number): boolean {
  if (typeof v !== "object" || v === null) return false;
  if (max <= 0) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (depthOver(v[i], max - 1)) return true;
    return false;
  }
  // JSON.parse makes plain objects with only own data properties: for-in sees exactly those.
  const o = v as Record<string, unknown>;
  for (const k in o) if (depthOver(o[k], max - 1)) return true;
  return false;
}

/** Strings up to this many bytes are tried as ASCII before the TextDecoder (see Reader.str). */
const SHORT_STRING = 32;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

class Reader {
  pos = 0;
  private dv?: DataView;
  constructor(private readonly b: Uint8Array) {}

  /** Made on first use: frames of fixed-size values and short strings never need it. */
  private get view(): DataView {
    return (this.dv ??= new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength));
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.b.length) throw new WireDecodeError("MessagePack value is truncated");
    this.pos = at + n;
    return at;
  }

  // Methods, not arrow-function fields: a Reader is made per frame, and fields would be three closures each time.
  private u8(): number {
    return this.b[this.need(1)];
  }

  private u16(): number {
    return this.view.getUint16(this.need(2));
  }

  private u32(): number {
    return this.view.getUint32(this.need(4));
  }

  private int(big: bigint): number {
    if (big > MAX_SAFE || big < MIN_SAFE) throw new WireDecodeError("integer outside ±(2^53-1)");
    return Number(big);
  }

  private str(n: number): string {
    const at = this.need(n);
    const b = this.b;
    // Short ASCII strings (every key, op, room, ref) are built here: bytes below 0x80 are valid
    // UTF-8 as they are, and a TextDecoder call costs more than the loop. Anything else is decoded
    // (and validated) by the TextDecoder.
    if (n <= SHORT_STRING) {
      let s = "";
      for (let i = at; i < at + n; i++) {
        const c = b[i];
        if (c >= 0x80) return this.utf8(at, n);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return this.utf8(at, n);
  }

  private utf8(at: number, n: number): string {
    try {
      return utf8.decode(this.b.subarray(at, at + n));
    } catch {
      throw new WireDecodeError("string is not valid UTF-8");
    }
  }

  private bin(n: number): Uint8Array {
    const at = this.need(n);
    return this.b.slice(at, at + n);
  }

  private array(n: number, depth: number): unknown[] {
    if (depth > MAX_DEPTH) throw new WireDecodeError(`frame nests deeper than ${MAX_DEPTH} levels`);
    // Each element takes at least one byte: a count beyond the bytes left is a lie, refused before allocating.
    if (n > this.b.length - this.pos) throw new WireDecodeError("MessagePack value is truncated");
    const a = new Array<unknown>(n);
    for (let i = 0; i < n; i++) a[i] = this.value(depth + 1);
    return a;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) throw new WireDecodeError(`frame nests deeper than ${MAX_DEPTH} levels`);
    if (2 * n > this.b.length - this.pos) throw new WireDecodeError("MessagePack value is truncated");
    const o: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      if (typeof k !== "string") throw new WireDecodeError("map keys must be strings");
      o[k] = this.value(depth + 1);
    }
    return o;
  }

  value(depth: number): unknown {
    const t = this.u8();
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0xa0 && t <= 0xbf) return this.str(t & 0x1f);
    if (t >= 0x90 && t <= 0x9f) return this.array(t & 0x0f, depth);
    if (t >= 0x80 && t <= 0x8f) return this.map(t & 0x0f, depth);
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xca:
        return this.view.getFloat32(this.need(4));
      case 0xcb:
        return this.view.getFloat64(this.need(8));
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf:
        return this.int(this.view.getBigUint64(this.need(8)));
      case 0xd0:
        return this.view.getInt8(this.need(1));
      case 0xd1:
        return this.view.getInt16(this.need(2));
      case 0xd2:
        return this.view.getInt32(this.need(4));
      case 0xd3:
        return this.int(this.view.getBigInt64(this.need(8)));
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        // 0xc1 (never used), 0xc7-0xc9 (ext 8/16/32), 0xd4-0xd8 (fixext 1-16).
        throw new WireDecodeError(t === 0xc1 ? "invalid MessagePack byte 0xc1" : "MessagePack extension types are not accepted");
    }
  }
}
