import { expect, test } from "bun:test";
import { ConfigError } from "../shared/config.ts";
import { clientAddressResolver } from "./client-addr.ts";

test("no trusted proxies: the socket peer, whatever X-Forwarded-For says", () => {
  const addr = clientAddressResolver([]);
  expect(addr("192.0.2.1", "203.0.113.5")).toBe("192.0.2.1");
  expect(addr("::ffff:192.0.2.1", null)).toBe("192.0.2.1");
  expect(addr(undefined, "203.0.113.5")).toBe("unknown");
});

test("a trusted peer: the rightmost hop that is not a trusted proxy; forged hops left of it are ignored", () => {
  const addr = clientAddressResolver(["10.0.0.0/8", "192.0.2.7", "fd00::/8"]);
  expect(addr("10.1.1.1", "203.0.113.5")).toBe("203.0.113.5");
  expect(addr("10.1.1.1", "6.6.6.6, 203.0.113.5, 10.2.2.2")).toBe("203.0.113.5");
  expect(addr("::ffff:192.0.2.7", "2001:db8::1")).toBe("2001:db8::1");
  expect(addr("fd12::1", "198.51.100.9")).toBe("198.51.100.9");
  expect(addr("10.1.1.1", "garbage, 203.0.113.5")).toBe("203.0.113.5");
  expect(addr("10.1.1.1", "garbage")).toBe("10.1.1.1");
  expect(addr("10.1.1.1", null)).toBe("10.1.1.1");
  expect(addr("192.0.2.8", "203.0.113.5")).toBe("192.0.2.8"); // not trusted
});

test("an entry that is neither an address nor a CIDR names IM_TRUSTED_PROXIES", () => {
  for (const bad of ["proxy.local", "10.0.0.0/33", "10.0.0.0/8/1", "::1/129", "10.0.0.0/x"]) {
    expect(() => clientAddressResolver([bad])).toThrow(ConfigError);
    expect(() => clientAddressResolver([bad])).toThrow(/IM_TRUSTED_PROXIES/);
  }
});
