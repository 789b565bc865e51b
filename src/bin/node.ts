// `bun run node --roles logic,task[,connect,api] [--index N]`: several roles in one process.
// Each role keeps its own contract, ports, ops port, etcd registration and stores, so other
// processes find and call it as before (over gRPC, with the cluster secret); only calls between
// roles of this process skip gRPC and serialization (src/shared/rpc.ts localClient): connect
// and api call the logic here, task pushes to the connect instance here. Roles start in the
// order logic, task, connect, api and stop in reverse. --index N (default 0) picks instance N's
// ports of the `bun run cluster` layout for every role (IM_BASE_PORT + offset + N).
import { parseArgs } from "node:util";
import { runProcess, type RoleName } from "./run.ts";
import { ROLE_STARTS, type Colocated, type Stop } from "./roles.ts";
import { parseRoleList } from "../cluster/args.ts";

const ORDER: RoleName[] = ["logic", "task", "connect", "api"];
const USAGE = "usage: bun run node --roles ROLE[,ROLE...] [--index N]   (roles: logic, task, connect, api)";

function parse(argv: string[]): { roles: RoleName[]; index: number } {
  const { values } = parseArgs({ args: argv, options: { roles: { type: "string" }, index: { type: "string" } } });
  const names = parseRoleList(values.roles ?? "", "--roles", 1);
  const index = Number(values.index ?? 0);
  if (!/^\d+$/.test(values.index ?? "0") || index > 9) throw new Error("--index must be an integer in 0..9");
  return { roles: ORDER.filter((r) => names.includes(r)), index };
}

if (Bun.argv.slice(2).some((a) => a === "--help" || a === "-h")) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
let args;
try {
  args = parse(Bun.argv.slice(2));
} catch (e) {
  process.stderr.write(`node: ${(e as Error).message}\n${USAGE}\n`);
  process.exit(2);
}

await runProcess(`node(${args.roles.join(",")})`, args.roles, args.index, async (configs, log) => {
  const local: Colocated = { connects: new Map() };
  const stops: Stop[] = [];
  const stopAll = async () => {
    while (stops.length) await stops.pop()!();
  };
  try {
    for (const role of args.roles) stops.push(await ROLE_STARTS[role]({ config: configs[role]!, log: log.child({ role }) }, local));
  } catch (e) {
    await stopAll().catch(() => undefined);
    throw e;
  }
  log.info("node ready", { roles: args.roles });
  return stopAll;
});
