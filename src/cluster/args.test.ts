import { describe, expect, test } from "bun:test";
import { parseClusterArgs, parseRoleList, UsageError } from "./args.ts";

describe("parseClusterArgs", () => {
  test("defaults: one of each role, base 17000, .data", () => {
    expect(parseClusterArgs([])).toEqual({ counts: { api: 1, logic: 1, task: 1, connect: 1 }, basePort: 17000, dataDir: ".data", colocate: [] });
  });

  test("flags, in both --k v and --k=v forms", () => {
    const a = parseClusterArgs(["--logic", "2", "--connect=3", "--api", "0", "--base-port", "20000", "--data-dir", "/tmp/x"]);
    expect(a).toEqual({ counts: { api: 0, logic: 2, task: 1, connect: 3 }, basePort: 20000, dataDir: "/tmp/x", colocate: [] });
  });

  test("--colocate", () => {
    expect(parseClusterArgs(["--colocate", "--connect", "2"]).colocate).toEqual(["api", "logic", "task", "connect"]);
    expect(parseClusterArgs(["--colocate-roles", "task,logic"]).colocate).toEqual(["logic", "task"]);
    expect(() => parseClusterArgs(["--colocate-roles", "logic"])).toThrow(/two or more/);
    expect(() => parseClusterArgs(["--colocate-roles", "logic,db"])).toThrow(/got db/);
    expect(() => parseClusterArgs(["--colocate-roles", "logic,logic"])).toThrow(/got logic twice/);
  });

  test("IM_BASE_PORT is the default base port; the flag wins", () => {
    expect(parseClusterArgs([], { IM_BASE_PORT: "21000" }).basePort).toBe(21000);
    expect(parseClusterArgs(["--base-port", "22000"], { IM_BASE_PORT: "21000" }).basePort).toBe(22000);
  });

  test("every problem is reported at once", () => {
    let err: unknown;
    try {
      parseClusterArgs(["--logic", "11", "--task", "x", "--bogus", "--base-port", "80"]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const msg = (err as Error).message;
    expect(msg).toContain("--logic must be an integer in 0..10");
    expect(msg).toContain("--task must be");
    expect(msg).toContain("unknown flag --bogus");
    expect(msg).toContain("--base-port must be");
  });

  test("--help is a UsageError marked as help", () => {
    expect(() => parseClusterArgs(["--help"])).toThrow(UsageError);
    try {
      parseClusterArgs(["-h"]);
    } catch (e) {
      expect((e as UsageError).help).toBe(true);
    }
  });
});

test("parseRoleList: the one role-list rule of --colocate-roles and bun run node --roles", () => {
  expect(parseRoleList(" task, logic ,", "--roles", 1)).toEqual(["logic", "task"]);
  expect(parseRoleList("connect", "--roles", 1)).toEqual(["connect"]);
  expect(() => parseRoleList("", "--roles", 1)).toThrow("--roles needs one or more distinct roles of api, logic, task, connect");
  expect(() => parseRoleList("logic,web", "--roles", 1)).toThrow(/got web$/);
  expect(() => parseRoleList("api,api", "--roles", 1)).toThrow(/got api twice$/);
  expect(() => parseRoleList("api,api", "--roles", 1)).toThrow(UsageError);
});
