// One shared local infrastructure (redis-server, mariadbd, etcd) per `bun test` process: started
// on first use in a fresh temporary folder on free ports, stopped and deleted by the preload's
// global afterAll (test/support/preload.ts). On SIGINT/SIGTERM the children are killed at once;
// if the runner dies outright, startInfra's orphan guard kills them.
// A missing binary rejects getInfra(), so tests that need it fail rather than skip.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startInfra, type Infra } from "../../src/infra/index.ts";
import { createLogger } from "../../src/shared/log.ts";

export { freePort, freePortRange } from "../../src/infra/ports.ts";
export type { Infra } from "../../src/infra/index.ts";

interface Shared {
  promise?: Promise<Infra>;
  infra?: Infra;
  dataDir?: string;
  hooked?: boolean;
}
// On globalThis: every test file of the run sees the same one, however it imports this module.
const KEY = Symbol.for("bunchat.test.infra");
const shared: Shared = ((globalThis as Record<symbol, Shared>)[KEY] ??= {});

/** The run's shared infrastructure, started on the first call. */
export function getInfra(): Promise<Infra> {
  shared.promise ??= start();
  return shared.promise;
}

async function start(): Promise<Infra> {
  shared.dataDir = mkdtempSync(join(tmpdir(), "bunchat-test-"));
  hookEmergencyExit();
  const log = createLogger({ level: "warn", base: { test: "infra" } });
  shared.infra = await startInfra({ dataDir: shared.dataDir, log, keepData: false });
  return shared.infra;
}

/** Stops the shared infrastructure and deletes its folder; called once, after the last test file. */
export async function stopSharedInfra(): Promise<void> {
  const { promise, dataDir } = shared;
  shared.promise = undefined;
  shared.infra = undefined;
  // A failed start already stopped what it had started, and its error failed the tests.
  if (promise) await promise.then((infra) => infra.stop(), () => undefined);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  shared.dataDir = undefined;
}

/** Synchronous last resort when the run ends without afterAll (Ctrl-C, kill). */
function killNow(): void {
  const infra = shared.infra;
  if (infra) {
    for (const s of [infra.redis, infra.mysql, infra.etcd]) {
      if (s.pid) process.kill(s.pid, "SIGKILL");
    }
  }
  if (shared.dataDir) rmSync(shared.dataDir, { recursive: true, force: true });
}

function hookEmergencyExit(): void {
  if (shared.hooked) return;
  shared.hooked = true;
  process.on("exit", killNow); // bun test does not emit "exit" today; plain bun scripts do
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      killNow();
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
}
