// MessagePack for gRPC payloads and for ?format=msgpack WebSocket frames. Plain maps (no
// msgpackr record extension), so any MessagePack client can read what we send.
import { Packr } from "msgpackr";

// Properties whose value is undefined are left out (msgpackr would otherwise write an extension
// value other MessagePack clients cannot read).
const packr = new Packr({ useRecords: false, mapsAsObjects: true, skipValues: [undefined] } as ConstructorParameters<typeof Packr>[0]);

export const pack = (v: unknown): Buffer => packr.pack(v);
export const unpack = (b: Uint8Array): unknown => packr.unpack(b);
