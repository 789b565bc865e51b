// accounts.ts is imported by every role (task and connect too) but only logic logs anyone in: the
// dummy argon2 hash of timing-safe logins is made on first need, not at module load. Also the
// session id rule every stored session depends on.
import { expect, test } from "bun:test";

test("importing accounts.ts hashes nothing; constructing Accounts makes the dummy hash once, off the event loop", async () => {
  const calls = { hash: 0, hashSync: 0 };
  const pw = Bun.password as { hash: typeof Bun.password.hash; hashSync: typeof Bun.password.hashSync };
  const { hash, hashSync } = pw;
  pw.hash = (...a: Parameters<typeof hash>) => (calls.hash++, hash(...a));
  pw.hashSync = (...a: Parameters<typeof hashSync>) => (calls.hashSync++, hashSync(...a));
  try {
    const { Accounts } = await import(`./accounts.ts?load=${Date.now()}`);
    expect(calls).toEqual({ hash: 0, hashSync: 0 });
    new Accounts({} as never);
    new Accounts({} as never);
    expect(calls).toEqual({ hash: 1, hashSync: 0 });
  } finally {
    pw.hash = hash;
    pw.hashSync = hashSync;
  }
});

test("a session id is the token's SHA-256 in hex: Redis keys sessions by it, so a change would end every session", async () => {
  const { sessionId } = await import("./accounts.ts");
  expect(sessionId("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  expect(sessionId("ü\ud800")).toBe(new Bun.CryptoHasher("sha256").update("ü\ud800").digest("hex"));
});
