// The client address of an HTTP request (CONTRACT.md v1.1 login limits): the TCP peer, or, only
// when that peer is a configured trusted proxy (IM_TRUSTED_PROXIES), the address it put in
// X-Forwarded-For. A client can write any X-Forwarded-For it likes, so the header is read from
// the right (the hop our proxy appended) and trusted hops are skipped: the first address that
// is not a trusted proxy is the client.
import { BlockList, isIP } from "node:net";
import { ConfigError } from "../shared/config.ts";

/** "::ffff:1.2.3.4" (an IPv4 peer on a dual-stack socket) → "1.2.3.4"; other addresses as they are. */
const normalize = (a: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a.toLowerCase());

/**
 * Parses IM_TRUSTED_PROXIES entries ("10.0.0.1", "10.0.0.0/8", "fd00::/8").
 * Throws ConfigError naming the variable for an entry that is neither an address nor a CIDR.
 * Returns (peer, x-forwarded-for header) → client address; peer undefined (no socket, as with
 * app.handle() in tests) gives "unknown".
 */
export function clientAddressResolver(trusted: readonly string[]): (peer: string | undefined, xff: string | null) => string {
  const list = new BlockList();
  const bad: string[] = [];
  for (const entry of trusted) {
    const [addr, bits, extra] = entry.split("/");
    const family = isIP(addr);
    const prefix = Number(bits);
    if (!family || extra !== undefined) bad.push(entry);
    else if (bits === undefined) list.addAddress(addr, family === 4 ? "ipv4" : "ipv6");
    else if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) bad.push(entry);
    else list.addSubnet(addr, prefix, family === 4 ? "ipv4" : "ipv6");
  }
  if (bad.length) throw new ConfigError([`IM_TRUSTED_PROXIES: not an address or CIDR: ${bad.join(", ")}`]);
  const isTrusted = (a: string) => {
    const family = isIP(a);
    return family !== 0 && list.check(a, family === 4 ? "ipv4" : "ipv6");
  };
  return (peer, xff) => {
    if (!peer) return "unknown";
    let client = normalize(peer);
    if (!trusted.length || !xff || !isTrusted(client)) return client;
    const hops = xff.split(",").map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalize(hops[i]);
      if (!isIP(hop)) break; // garbage: keep the last hop we could vouch for
      client = hop;
      if (!isTrusted(hop)) break;
    }
    return client;
  };
}
