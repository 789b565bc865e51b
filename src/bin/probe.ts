// Container health probe (the images have no curl): `bun src/bin/probe.ts [/readyz|/healthz] [role]`
// fetches this process's own ops endpoint, at the same IM_METRICS_HOST / IM_METRICS_PORT the role
// resolves (IM_HOST=auto included), and exits 0 on 200, 1 otherwise (printing the answer).
import { METRICS_OFFSETS, loadConfig } from "../shared/config.ts";
import { resolveHosts } from "../shared/host.ts";
import { opsPort, roleEnv } from "./run.ts";

const path = process.argv[2] ?? "/readyz";
const role = (process.argv[3] ?? process.env.ROLE ?? "api") as keyof typeof METRICS_OFFSETS;
const env = process.env;
try {
  const metricsPort = opsPort(env, role, 0, 1);
  const { config } = loadConfig(roleEnv(env), metricsPort === undefined ? {} : { metricsPort });
  const { metricsHost } = await resolveHosts(config);
  const host = metricsHost.includes(":") ? `[${metricsHost}]` : metricsHost;
  const res = await fetch(`http://${host}:${config.metricsPort}${path}`, { signal: AbortSignal.timeout(3000) });
  const body = await res.text();
  if (!res.ok) process.stdout.write(body.slice(0, 500));
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  process.stdout.write(`probe failed: ${(e as Error).message}\n`);
  process.exit(1);
}
