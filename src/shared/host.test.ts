import { expect, test } from "bun:test";
import { ClusterAuth, clusterAuthFor } from "./cluster-auth.ts";
import { loadConfig } from "./config.ts";
import { isLoopback, resolveHosts } from "./host.ts";

test("isLoopback: 127/8, ::1 in any spelling, localhost; bare, host:port, [v6]:port and URLs", () => {
  for (const h of [
    "127.0.0.1",
    "127.255.3.4",
    "::1",
    "0:0:0:0:0:0:0:1",
    "[::1]",
    "[::1]:2379",
    "::ffff:127.0.0.1",
    "localhost",
    "LOCALHOST",
    "localhost:2379",
    "127.0.0.1:2379",
    "http://127.0.0.1:2379",
    "http://[::1]:2379",
    "http://localhost:2379",
    "redis://user:pw@127.0.0.1:6379/0",
    "mysql://root@localhost/bunchat",
  ])
    expect([h, isLoopback(h)]).toEqual([h, true]);
  for (const h of [
    "10.1.2.3",
    "0.0.0.0",
    "::",
    "::2",
    "[fe80::1]:2379",
    "10.0.0.5:2379",
    "etcd-2:2379",
    "http://etcd-2:2379",
    "https://128.0.0.1",
    "localhost.example.com",
    "redis://127.0.0.1.evil.example:6379",
    "",
    "http://[::1",
  ])
    expect([h, isLoopback(h)]).toEqual([h, false]);
});

test("open mode and the IM_HOST warning agree on scheme-less etcd endpoints", async () => {
  const cfg = (env: Record<string, string>) => loadConfig(env).config;
  for (const ep of ["127.0.0.1:2379", "localhost:2379", "[::1]:2379"]) {
    const c = cfg({ IM_ETCD_ENDPOINTS: ep, IM_HOST: "[::1]" });
    expect(clusterAuthFor(c, { redis: true, mysql: true })).toBeInstanceOf(ClusterAuth);
    expect((await resolveHosts(c)).warnings).toEqual([]);
  }
  const remote = cfg({ IM_ETCD_ENDPOINTS: "10.0.0.5:2379", IM_HOST: "localhost" });
  expect(() => clusterAuthFor(remote)).toThrow(/IM_ETCD_ENDPOINTS/);
  expect((await resolveHosts(remote)).warnings.join()).toContain("loopback");
});
