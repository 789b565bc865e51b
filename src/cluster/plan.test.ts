import { describe, expect, test } from "bun:test";
import { PORT_SPAN } from "./args.ts";
import { allPorts, infraPorts, planInstances, readyLine } from "./plan.ts";

describe("planInstances", () => {
  const plan = planInstances({ api: 1, logic: 2, task: 2, connect: 2 }, 20000);

  test("ports follow PORT_OFFSETS, instance i at +i", () => {
    const byName = Object.fromEntries(plan.map((i) => [i.name, i]));
    expect(byName["api-0"].env).toEqual({ IM_API_PORT: "20010", IM_METRICS_PORT: "20070" });
    expect(byName["logic-1"].env).toEqual({ IM_LOGIC_PORT: "20021", IM_METRICS_PORT: "20031" });
    expect(byName["task-1"].env).toEqual({ IM_METRICS_PORT: "20061" });
    expect(byName["connect-1"].env).toEqual({ IM_CONNECT_PORT: "20041", IM_CONNECT_RPC_PORT: "20051", IM_METRICS_PORT: "20081" });
    expect(byName["logic-1"].opsUrl).toBe("http://127.0.0.1:20031");
    // api and connect: the ops port is internal, apart from the public one.
    expect(byName["api-0"].opsUrl).toBe("http://127.0.0.1:20070");
    expect(byName["connect-1"].opsUrl).toBe("http://127.0.0.1:20081");
    expect(byName["connect-0"].publicUrl).toBe("ws://127.0.0.1:20040/ws");
  });

  test("no two listeners share a port", () => {
    const ports = allPorts(plan, infraPorts(20000));
    // infra 4, api 1×(http+ops), logic 2×(grpc+ops), task 2×ops, connect 2×(ws+rpc+ops)
    expect(ports.size).toBe(4 + 2 + 4 + 2 + 6);
    for (const p of ports.keys()) expect(p - 20000).toBeWithin(0, PORT_SPAN);
  });

  test("ready line lists api, connect and every instance's ops URL", () => {
    const r = JSON.parse(readyLine(plan));
    expect(r.event).toBe("ready");
    expect(r.api).toEqual(["http://127.0.0.1:20010"]);
    expect(r.connect).toEqual(["ws://127.0.0.1:20040/ws", "ws://127.0.0.1:20041/ws"]);
    expect(r.metrics).toHaveLength(7);
  });
});
