import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "./config.ts";

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
};

describe("loadConfig", () => {
  test("IM_SEND_LINGER_MS: 0 unless set, 0..100 ms", () => {
    expect(loadConfig({}).config.sendLingerMs).toBe(0);
    expect(loadConfig({ IM_SEND_LINGER_MS: "10" }).config.sendLingerMs).toBe(10);
    expect(problemsOf({ IM_SEND_LINGER_MS: "100" })).toEqual([]);
    expect(problemsOf({ IM_SEND_LINGER_MS: "101" })).toEqual(["IM_SEND_LINGER_MS=101 must be an integer in 0..100"]);
    expect(problemsOf({ IM_SEND_LINGER_MS: "-1" })).toEqual(["IM_SEND_LINGER_MS=-1 must be an integer in 0..100"]);
    expect(problemsOf({ IM_SEND_LINGER_MS: "2.5" })).toEqual(["IM_SEND_LINGER_MS=2.5 must be an integer in 0..100"]);
  });

  test("every problem is reported at once; unknown IM_* names are warnings", () => {
    expect(problemsOf({ IM_SEND_LINGER_MS: "x", IM_LEASE_TTL: "1" })).toEqual([
      "IM_LEASE_TTL=1 must be an integer in 2..9007199254740991",
      "IM_SEND_LINGER_MS=x must be an integer in 0..100",
    ]);
    expect(loadConfig({ IM_SEND_LINGR_MS: "5" }).warnings).toEqual(["unknown environment variable IM_SEND_LINGR_MS is ignored"]);
  });
});
