// Lua scripts of read positions (read.ts) and typing (typing.ts), defined on a connection once by
// defineReadScripts, as scripts.ts's defineScripts does for the send and presence scripts.
import type Redis from "ioredis";

/** The field of a user's readSeqs hash that says it holds their MySQL rows. */
export const LOADED = "_";

/**
 * KEYS: readSeqs, conv hash, user convs (or the readSeqs key again: no add), dirty set, stream,
 * user instances. ARGV: conv, seq (decimal), packed "rd" event, "1" if the only recipient of the
 * push would be the user's other connections (a room, asked over WS), own-send field.
 * The current readSeq is max(explicit, own-send); only a seq above it changes anything.
 * Returns {readSeq, changed 0|1}, or {-1, 0} if the hash must be loaded from MySQL first.
 * With ARGV[4] = "1" and at most one open connection of the user (the asking one), no event is
 * appended: there is no one to tell. Most users have one tab, and reads come about as often as
 * messages are shown, so this saves a stream entry, a routing lookup and a push per read.
 */
const MARK_READ = `
if redis.call('HEXISTS', KEYS[1], '${LOADED}') == 0 then return {-1, 0} end
if KEYS[3] ~= KEYS[1] then redis.call('SADD', KEYS[3], ARGV[1]) end
local last = redis.call('HGET', KEYS[2], 'seq') or '0'
local want = ARGV[2]
if tonumber(last) < tonumber(want) then want = last end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local own = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0')
if own > cur then cur = own end
if tonumber(want) <= cur then return {cur, 0} end
redis.call('HSET', KEYS[1], ARGV[1], want)
redis.call('SADD', KEYS[4], KEYS[1])
if ARGV[4] == '1' then
  local n = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[6])) do n = n + (tonumber(v) or 0) end
  if n <= 1 then return {tonumber(want), 1} end
end
redis.call('XADD', KEYS[5], '*', 'n', want, 'd', ARGV[3])
return {tonumber(want), 1}
`;

/** KEYS: readSeqs. ARGV: conv, readSeq, … (from MySQL). Merges by max and marks the hash loaded. */
const LOAD = `
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], '${LOADED}', '1')
return 1
`;

/** KEYS: dirty set, claims hash. ARGV: now ms, max, stale ms. Returns the claimed readSeqs keys. */
const CLAIM = `
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local out = {}
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  if #out >= max then break end
  if tonumber(claims[i + 1]) < now - tonumber(ARGV[3]) then
    out[#out + 1] = claims[i]
    redis.call('HSET', KEYS[2], claims[i], ARGV[1])
  end
end
if #out < max then
  for _, k in ipairs(redis.call('SPOP', KEYS[1], max - #out)) do
    out[#out + 1] = k
    redis.call('HSET', KEYS[2], k, ARGV[1])
  end
end
return out
`;

/** KEYS: claims hash. ARGV: claim time, keys…: drops the claims still holding that time. */
const UNCLAIM = `
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
`;

/** KEYS: gate, stream. ARGV: gate ms, packed event. Returns 1 if relayed, 0 if gated. */
const TYPING = `
if not redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then return 0 end
redis.call('XADD', KEYS[2], '*', 'n', 0, 'd', ARGV[2])
return 1
`;

export interface ReadScripts {
  /** MARK_READ (6 keys, then ARGV): resolves to {readSeq, changed 0|1}, or {-1, 0} if the hash must be loaded first. */
  imMarkRead(...keysAndArgv: (string | Buffer)[]): Promise<[number, number]>;
  /** LOAD (1 key, then conv, readSeq pairs): resolves to 1. */
  imReadLoad(...keysAndArgv: string[]): Promise<number>;
  /** CLAIM (2 keys, then now ms, max, stale ms): resolves to the claimed readSeqs keys. */
  imReadClaim(...keysAndArgv: string[]): Promise<string[]>;
  /** UNCLAIM (1 key, then claim time, keys…): resolves to 1. */
  imReadUnclaim(...keysAndArgv: string[]): Promise<number>;
  /** TYPING (2 keys, then gate ms, packed event): resolves to 1 if relayed, 0 if gated. */
  imTyping(...keysAndArgv: (string | Buffer)[]): Promise<number>;
}

/** Defines the read and typing scripts on redis (EVALSHA, loaded on first use) and returns it typed with them. */
export function defineReadScripts<R extends Redis>(redis: R): R & ReadScripts {
  redis.defineCommand("imMarkRead", { lua: MARK_READ, numberOfKeys: 6 });
  redis.defineCommand("imReadLoad", { lua: LOAD, numberOfKeys: 1 });
  redis.defineCommand("imReadClaim", { lua: CLAIM, numberOfKeys: 2 });
  redis.defineCommand("imReadUnclaim", { lua: UNCLAIM, numberOfKeys: 1 });
  redis.defineCommand("imTyping", { lua: TYPING, numberOfKeys: 2 });
  return redis as R & ReadScripts;
}
