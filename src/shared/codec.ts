// MessagePack for gRPC payloads and for ?format=msgpack WebSocket frames. Plain maps (no
// msgpackr record extension), so any MessagePack client can read what we send.
import { Packr } from "msgpackr";

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: false });

export const pack = (v: unknown): Buffer => packr.pack(v);
export const unpack = (b: Uint8Array): unknown => packr.unpack(b);
