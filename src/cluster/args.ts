// Command-line flags of `bun run cluster`.
import { parseArgs } from "node:util";
import { DEFAULT_BASE_PORT } from "../shared/config.ts";

export const ROLES = ["api", "logic", "task", "connect"] as const;
export type Role = (typeof ROLES)[number];

export interface ClusterArgs {
  counts: Record<Role, number>;
  basePort: number;
  dataDir: string;
  /** Roles whose instance i share one process (`bun src/bin/node.ts --roles ... --index i`); --colocate: all, --colocate-roles: a list; [] = none. */
  colocate: Role[];
}

/** Each role's ports are 10 apart in the layout (PORT_OFFSETS), so at most 10 instances each. */
export const MAX_INSTANCES = 10;
/** The layout uses base .. base+89. */
export const PORT_SPAN = 90;

export const USAGE = `usage: bun run cluster [--api N] [--logic N] [--task N] [--connect N] [--base-port P] [--data-dir DIR] [--colocate | --colocate-roles R,R]
  --api, --logic, --task, --connect  instances of each role, 0..${MAX_INSTANCES} (default 1)
  --base-port P  every port is P + a fixed offset (default $IM_BASE_PORT or ${DEFAULT_BASE_PORT}: Redis P, MariaDB P+1, etcd P+2, API P+10, ...)
  --data-dir DIR  Redis, MariaDB and etcd data and logs, kept between runs (default .data)
  --colocate  one process per instance index hosting instance i of every role (bun run node --roles ... --index i):
              calls between roles of one process are in-process; fewer processes and wake-ups on small boxes
  --colocate-roles R,R  the same for these roles only (e.g. logic,task); the others run one per process`;

export class UsageError extends Error {
  /** True for --help: not a mistake, exit 0. */
  constructor(message: string, readonly help = false) {
    super(message);
  }
}

/**
 * A comma-separated role list ("logic, task") as the distinct roles it names, in ROLES order.
 * Throws UsageError naming flag when it has fewer than min roles, an unknown role or one twice.
 * Used by --colocate-roles here and by `bun run node --roles`.
 */
export function parseRoleList(list: string, flag: string, min: number): Role[] {
  const names = list.split(",").map((r) => r.trim()).filter(Boolean);
  const bad = names.find((r) => !(ROLES as readonly string[]).includes(r));
  const twice = names.find((r, i) => names.indexOf(r) !== i);
  if (names.length >= min && bad === undefined && twice === undefined) return ROLES.filter((r) => names.includes(r));
  const got = bad !== undefined ? `, got ${bad}` : twice !== undefined ? `, got ${twice} twice` : "";
  throw new UsageError(`${flag} needs ${min > 1 ? "two" : "one"} or more distinct roles of ${ROLES.join(", ")}${got}`);
}

/** env: IM_BASE_PORT, when set, is the default of --base-port. */
export function parseClusterArgs(argv: string[], env: Record<string, string | undefined> = {}): ClusterArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: false,
    allowPositionals: true,
    options: {
      api: { type: "string" },
      logic: { type: "string" },
      task: { type: "string" },
      connect: { type: "string" },
      "base-port": { type: "string" },
      "data-dir": { type: "string" },
      colocate: { type: "boolean" },
      "colocate-roles": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) throw new UsageError(USAGE, true);
  const problems: string[] = [];
  const known = new Set([...ROLES, "base-port", "data-dir", "colocate", "colocate-roles", "help"]);
  for (const k of Object.keys(values)) if (!known.has(k)) problems.push(`unknown flag --${k}`);
  if (positionals.length) problems.push(`unexpected argument ${positionals[0]}`);

  const int = (name: string, raw: unknown, def: number, min: number, max: number): number => {
    if (raw === undefined) return def;
    const n = Number(raw);
    if (typeof raw !== "string" || !/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(`--${name} must be an integer in ${min}..${max}, got ${raw === true ? "nothing" : String(raw)}`);
    }
    return n;
  };
  const counts = {} as Record<Role, number>;
  for (const role of ROLES) counts[role] = int(role, values[role], 1, 0, MAX_INSTANCES);
  const basePort = int("base-port", values["base-port"] ?? env.IM_BASE_PORT, DEFAULT_BASE_PORT, 1024, 65535 - PORT_SPAN);
  const dataDir = values["data-dir"] ?? ".data";
  if (typeof dataDir !== "string" || !dataDir) problems.push("--data-dir needs a folder");
  if (values.colocate !== undefined && typeof values.colocate !== "boolean") problems.push("--colocate takes no value");
  let colocate: Role[] = values.colocate === true ? [...ROLES] : [];
  const listed = values["colocate-roles"];
  if (listed !== undefined) {
    try {
      colocate = parseRoleList(typeof listed === "string" ? listed : "", "--colocate-roles", 2);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) throw new UsageError(`${problems.join("\n")}\n${USAGE}`);
  return { counts, basePort, dataDir: dataDir as string, colocate };
}
