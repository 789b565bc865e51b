// Every deploy file parsed by a real tool (issue 13, "What it must show"): the compose file by
// Debian's docker-compose (secrets required, one service per role, --scale connect=3 giving three
// instances with no host port and no shared address), nginx's compose config by `nginx -t`, the
// Prometheus config and alert rules by promtool, the Kubernetes manifests by kubernetes-models'
// schemas plus the rules the issue asks of them, and the Grafana provisioning files.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REPO = join(import.meta.dir, "..");
const ENV_EXAMPLE = join(REPO, "deploy/compose.env.example");

function run(cmd: string[], cwd = REPO): { code: number; out: string; err: string } {
  const p = Bun.spawnSync({ cmd, cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, COMPOSE_PROJECT_NAME: "bunchat" } });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

type Obj = Record<string, any>;

/** A volume's target path, from the long or the short ("src:target:mode") form docker-compose prints. */
const volumeTarget = (v: Obj | string) => (typeof v === "string" ? v.split(":")[1] : v.target);
/** A published port's host address, from either form ("127.0.0.1:9090:9090/tcp"). */
const hostIp = (p: Obj | string) => (typeof p === "string" ? (p.split(":").length === 3 ? p.split(":")[0] : "") : (p.host_ip ?? ""));

function composeConfig(envFile: string, ...extra: string[]): Obj {
  const files = ["-f", "docker-compose.yml", ...extra.flatMap((f) => ["-f", f])];
  const r = run(["docker-compose", "--env-file", envFile, ...files, "config"]);
  if (r.code !== 0) throw new Error(`docker-compose config failed:\n${r.err}`);
  return Bun.YAML.parse(r.out) as Obj;
}

describe("docker-compose.yml (docker-compose config)", () => {
  const cfg = composeConfig(ENV_EXAMPLE);
  const services = cfg.services as Record<string, Obj>;
  const ROLES = ["api", "logic", "task", "connect"];

  test("one service per role, each advertising its own address (IM_HOST=auto) and probing /readyz", () => {
    for (const role of ROLES) {
      const s = services[role];
      expect(s).toBeDefined();
      expect(s.environment.ROLE).toBe(role);
      expect(s.environment.IM_HOST).toBe("auto");
      expect(s.environment.IM_METRICS_PORT).toBe("9400");
      expect(s.container_name).toBeUndefined();
      expect(s.healthcheck.test).toEqual(["CMD", "bun", "src/bin/probe.ts", "/readyz"]);
      expect(s.stop_grace_period).toBe("20s");
    }
    // The old fixed copies are gone.
    expect(Object.keys(services).filter((n) => /-\d$/.test(n))).toEqual([]);
  });

  test("only the load balancer publishes host ports", () => {
    const published = Object.entries(services).filter(([, s]) => s.ports?.length).map(([n]) => n);
    expect(published).toEqual(["nginx"]);
    expect(services.nginx.ports.map((p: Obj | string) => (typeof p === "string" ? p : `${p.published}:${p.target}`)).sort()).toEqual(["443:443", "80:80"]);
  });

  test("--scale connect=3: three distinct instances, no port clash", () => {
    const dir = mkdtempSync(join(tmpdir(), "bunchat-compose-"));
    try {
      // docker-compose 1.29's `config` has no --scale flag; an override with `scale` is what it reads.
      const override = join(dir, "scale.yml");
      writeFileSync(override, "services:\n  connect:\n    scale: 3\n");
      const scaled = composeConfig(ENV_EXAMPLE, override).services.connect as Obj;
      expect(scaled.scale).toBe(3);
      // Compose names copies <project>_<service>_<n>; each has its own network namespace, so the
      // container ports repeat harmlessly, and no host port is bound that two copies could fight over.
      const instances = Array.from({ length: scaled.scale }, (_, i) => ({
        name: `bunchat_connect_${i + 1}`,
        hostPorts: (scaled.ports ?? []).map((p: Obj) => p.published),
        advertises: scaled.environment.IM_HOST,
      }));
      expect(new Set(instances.map((i) => i.name)).size).toBe(3);
      for (const i of instances) expect(i).toEqual({ name: i.name, hostPorts: [], advertises: "auto" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("MariaDB: the app connects as a non-root user; secrets only from the env file", () => {
    const db = services.mariadb.environment;
    expect(db.MARIADB_ALLOW_EMPTY_ROOT_PASSWORD).toBeUndefined();
    expect(db.MARIADB_ROOT_PASSWORD).toBe("change-me-root-password");
    expect(db.MARIADB_USER).toBe("bunchat");
    for (const role of ROLES) expect(services[role].environment.IM_MYSQL_URL).toBe("mysql://bunchat:change-me-app-password@mariadb:3306/bunchat");
    const dir = mkdtempSync(join(tmpdir(), "bunchat-compose-env-"));
    const empty = join(dir, "empty.env");
    writeFileSync(empty, "");
    const r = run(["docker-compose", "--env-file", empty, "config", "-q"]);
    rmSync(dir, { recursive: true, force: true });
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/BUNCHAT_(DB_PASSWORD|DB_ROOT_PASSWORD|CLUSTER_SECRET|GRAFANA_ADMIN_PASSWORD)/);
    expect(readFileSync(join(REPO, ".gitignore"), "utf8").split("\n")).toContain(".env");
  });

  test("Redis, etcd and MariaDB keep their data in volumes; Redis with AOF; etcd compacts and has a quota", () => {
    expect(services.redis.volumes.map(volumeTarget)).toEqual(["/data"]);
    expect(services.redis.command.join(" ")).toContain("--appendonly yes");
    expect(services.etcd.volumes.map(volumeTarget)).toEqual(["/etcd-data"]);
    expect(services.etcd.command).toContain("--auto-compaction-retention=1h");
    expect(services.etcd.command.some((a: string) => a.startsWith("--quota-backend-bytes="))).toBe(true);
    expect(services.mariadb.volumes.map(volumeTarget)).toEqual(["/var/lib/mysql"]);
    for (const s of ["redis", "mariadb", "etcd"]) expect(services[s].healthcheck).toBeDefined();
  });

  test("the monitoring override publishes Prometheus and Grafana on loopback only", () => {
    const m = composeConfig(ENV_EXAMPLE, "deploy/compose.monitoring.yml").services as Record<string, Obj>;
    for (const s of ["prometheus", "grafana"]) {
      expect(m[s].ports.length).toBe(1);
      for (const p of m[s].ports) expect(hostIp(p)).toBe("127.0.0.1");
    }
  });
});

describe("nginx (compose's config through nginx -t)", () => {
  test("the compose balancer config is valid with a certificate plugged in", () => {
    const dir = mkdtempSync(join(tmpdir(), "bunchat-nginx-t-"));
    try {
      mkdirSync(join(dir, "certs"));
      mkdirSync(join(dir, "logs"));
      const cert = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", join(dir, "certs/tls.key"), "-out", join(dir, "certs/tls.crt")]);
      expect(cert.code).toBe(0);
      // The container paths (/etc/nginx/...) point into the temp folder; nothing else is changed.
      const conf = readFileSync(join(REPO, "deploy/nginx/conf.d/default.conf"), "utf8").replaceAll("/etc/nginx/", `${dir}/`);
      writeFileSync(join(dir, "default.conf"), conf);
      for (const f of ["bunchat-http.conf", "bunchat-locations.conf"]) writeFileSync(join(dir, f), readFileSync(join(REPO, "deploy/nginx", f)));
      writeFileSync(
        join(dir, "nginx.conf"),
        `pid ${dir}/nginx.pid;\nerror_log ${dir}/logs/error.log;\nevents {}\nhttp {\n  access_log off;\n  include ${dir}/default.conf;\n}\n`,
      );
      const r = run(["nginx", "-t", "-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "logs/error.log")]);
      expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: expect.stringContaining("test is successful") });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Prometheus (promtool)", () => {
  test("alert rules and the compose config are valid", () => {
    const rules = run(["promtool", "check", "rules", "deploy/prometheus/alerts.yml"]);
    expect({ code: rules.code, out: rules.out }).toEqual({ code: 0, out: expect.stringContaining("SUCCESS") });
    const conf = run(["promtool", "check", "config", "deploy/prometheus/prometheus.compose.yml"]);
    expect({ code: conf.code, out: conf.out }).toEqual({ code: 0, out: expect.stringContaining("is valid prometheus config file syntax") });
  });

  test("alerts cover lag, persist delay, error rate and readiness", () => {
    const groups = (Bun.YAML.parse(readFileSync(join(REPO, "deploy/prometheus/alerts.yml"), "utf8")) as Obj).groups;
    const exprs = groups.flatMap((g: Obj) => g.rules.map((r: Obj) => r.expr)).join("\n");
    for (const m of ["bunchat_task_group_lag", "bunchat_persist_delay_seconds_bucket", "_errors_total", "bunchat_ready"]) expect(exprs).toContain(m);
  });
});

// kubernetes-models: one class per apiVersion/kind, validated against the Kubernetes OpenAPI schema.
async function k8sModel(apiVersion: string, kind: string): Promise<(new (d: Obj) => { validate(): void }) | undefined> {
  const path = apiVersion.includes("/") ? apiVersion : `v1/${apiVersion === "v1" ? "" : apiVersion}`;
  try {
    const mod = await import(`kubernetes-models/${path.replace(/\/$/, "")}/${kind}`);
    return mod[kind];
  } catch {
    return undefined;
  }
}

describe("Kubernetes manifests (kustomize, kubernetes-models)", () => {
  const dir = join(REPO, "deploy/k8s");
  const kustomization = Bun.YAML.parse(readFileSync(join(dir, "kustomization.yaml"), "utf8")) as Obj;
  const docs: Obj[] = kustomization.resources.flatMap((f: string) => {
    const parsed = Bun.YAML.parse(readFileSync(join(dir, f), "utf8"));
    return (Array.isArray(parsed) ? parsed : [parsed]).filter(Boolean);
  });
  const of = (kind: string) => docs.filter((d) => d.kind === kind);
  const byName = (kind: string, name: string) => of(kind).find((d) => d.metadata.name === name);
  const ROLES = ["api", "logic", "task", "connect"];

  test("every resource validates against its schema (ServiceMonitor: the operator's required fields)", async () => {
    expect(docs.length).toBeGreaterThan(15);
    for (const d of docs) {
      if (d.kind === "ServiceMonitor") {
        expect(d.apiVersion).toBe("monitoring.coreos.com/v1");
        expect(d.spec.selector.matchLabels).toBeDefined();
        expect(d.spec.endpoints.map((e: Obj) => e.port)).toEqual(["ops"]);
        continue;
      }
      const Model = await k8sModel(d.apiVersion, d.kind);
      expect({ kind: d.kind, apiVersion: d.apiVersion, known: !!Model }).toEqual({ kind: d.kind, apiVersion: d.apiVersion, known: true });
      expect(() => new Model!(d).validate()).not.toThrow();
    }
  });

  test("the validator does catch a broken manifest", async () => {
    const bad = structuredClone(byName("Deployment", "bunchat-api")!);
    bad.spec.template.spec.containers[0].ports[0].containerPort = "eighty";
    const Model = (await k8sModel("apps/v1", "Deployment"))!;
    expect(() => new Model(bad).validate()).toThrow(/containerPort/);
  });

  test("per role: Deployment with probes on the ops port, requests and limits, grace longer than the drain; Service; PDB", () => {
    for (const role of ROLES) {
      const dep = byName("Deployment", `bunchat-${role}`)!;
      const pod = dep.spec.template.spec;
      const c = pod.containers[0];
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(15);
      expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "ops" });
      expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "ops" });
      expect(c.ports.find((p: Obj) => p.name === "ops").containerPort).toBe(9400);
      expect(Object.keys(c.resources.requests).sort()).toEqual(["cpu", "memory"]);
      expect(Object.keys(c.resources.limits).sort()).toEqual(["cpu", "memory"]);
      expect(c.envFrom).toEqual([{ configMapRef: { name: "bunchat-config" } }]);
      expect(c.env.find((e: Obj) => e.name === "IM_CLUSTER_SECRET").valueFrom.secretKeyRef.name).toBe("bunchat-secrets");
      expect(c.env.find((e: Obj) => e.name === "IM_HOST").value).toBe("$(POD_IP)");
      expect(byName("Service", `bunchat-${role}`)!.spec.ports.some((p: Obj) => p.name === "ops")).toBe(true);
      expect(byName("PodDisruptionBudget", `bunchat-${role}`)).toBeDefined();
    }
    expect(of("HorizontalPodAutoscaler").map((h) => h.spec.scaleTargetRef.name).sort()).toEqual(["bunchat-api", "bunchat-connect"]);
  });

  test("secrets come from a Secret generated from an untracked env file whose example has every key used", () => {
    const gen = kustomization.secretGenerator.find((g: Obj) => g.name === "bunchat-secrets");
    expect(gen.envs).toEqual(["secrets.env"]);
    expect(readFileSync(join(REPO, ".gitignore"), "utf8")).toContain("deploy/k8s/secrets.env");
    const keys = readFileSync(join(dir, "secrets.env.example"), "utf8").split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split("=")[0]);
    const used = of("Deployment").flatMap((d) => d.spec.template.spec.containers[0].env.flatMap((e: Obj) => e.valueFrom?.secretKeyRef?.key ?? []));
    for (const k of used) expect(keys).toContain(k);
    expect(existsSync(join(dir, "secrets.env"))).toBe(false);
  });

  test("ingress routes like nginx; NetworkPolicies keep gRPC and ops ports internal", () => {
    const ing = of("Ingress")[0];
    const paths = ing.spec.rules[0].http.paths.map((p: Obj) => `${p.path} → ${p.backend.service.name}`);
    expect(paths).toEqual(["/ws → bunchat-connect", "/api/ → bunchat-api", "/ → bunchat-api", "/healthz → bunchat-api"]);
    expect(ing.spec.tls[0].secretName).toBe("bunchat-tls");
    const pols = of("NetworkPolicy");
    expect(pols.find((p) => p.metadata.name === "bunchat-default-deny")!.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress"] });
    const portsFrom = (name: string) => pols.find((p) => p.metadata.name === name)!.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
    expect(portsFrom("bunchat-public")).toEqual([8080]);
    expect(portsFrom("bunchat-internal-rpc")).toEqual([7000, 7001]);
    expect(portsFrom("bunchat-ops")).toEqual([9400]);
  });
});

describe("Grafana provisioning", () => {
  test("datasource and dashboard provider parse; the dashboard JSON queries our metrics through the datasource variable", () => {
    const ds = Bun.YAML.parse(readFileSync(join(REPO, "deploy/grafana/provisioning/datasources/prometheus.yml"), "utf8")) as Obj;
    expect(ds.datasources[0]).toMatchObject({ type: "prometheus", url: "http://prometheus:9090" });
    const prov = Bun.YAML.parse(readFileSync(join(REPO, "deploy/grafana/provisioning/dashboards/bunchat.yml"), "utf8")) as Obj;
    expect(prov.providers[0].options.path).toBe("/var/lib/grafana/dashboards");
    const dash = JSON.parse(readFileSync(join(REPO, "deploy/grafana/dashboards/bunchat.json"), "utf8"));
    const titles = dash.panels.map((p: Obj) => p.title).join(" | ");
    for (const t of ["Messages accepted", "Deliveries", "Send → socket write latency", "lag", "pending", "persist delay", "connections", "Errors by code", "RPC latency"])
      expect(titles.toLowerCase()).toContain(t.toLowerCase());
    for (const p of dash.panels) for (const t of p.targets) expect(t.expr).toMatch(/bunchat_/);
  });
});
