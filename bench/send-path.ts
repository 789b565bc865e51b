// What the send-path benches (logic-send.ts, ack-modes.ts) share: stand-ins for the stores logic's
// Messages reads besides Redis, and the stream of sends they offer.
import type { Accounts } from "../src/logic/accounts.ts";
import type { Db } from "../src/shared/db/index.ts";
import type { SendReq } from "../proto/logic.ts";

/** A database with no rows: the seq fence finds nothing to seed from. */
export const noRows = { select: () => ({ from: () => ({ where: () => ({ groupBy: async () => [] }) }) }) } as unknown as Db;
/** Every user id exists, named user<id>. */
export const benchAccounts = { names: async (ids: number[]) => new Map(ids.map((id) => [id, `user${id}`])) } as unknown as Accounts;

/**
 * The sends the benches offer, one per call: 100 senders over 100 rooms with a 64-character body;
 * every 10th a direct message with a clientMsgId, the rest room messages with a retryKey.
 */
export function sendStream(): () => SendReq {
  let serial = 0;
  return () => {
    const n = serial++;
    const uid = 1 + (n % 100);
    const body = `${n}:`.padEnd(64, "x");
    if (n % 10 === 9) return { from: { userId: uid, userName: `user${uid}` }, toUserId: 1 + ((n * 7) % 100), body, clientMsgId: `c${n}` };
    return { from: { userId: uid, userName: `user${uid}` }, room: `room${n % 100}`, body, retryKey: `bench:${n}` };
  };
}
