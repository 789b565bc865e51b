// Lua scripts: each runs atomically in Redis, which is what makes seq order equal stream order
// and keeps presence counters consistent when several connect instances and cleaners race.
import type Redis from "ioredis";

/**
 * Accept one message. KEYS: rate, idem (or ""), conv, stream, pending, sender convs, other convs.
 * ARGV: now ms, rate/s, burst, idem ttl s, packed event, conv, message id.
 * Returns {seq, "id|seq|ts"}: seq -1 rate limited; seq 0 duplicate (second value = first acceptance).
 */
const SEND = `
if KEYS[2] ~= '' then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {0, prev} end
end
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'v')
local tokens = tonumber(b[2]) or burst
local last = tonumber(b[1]) or now
if now > last then tokens = math.min(burst, tokens + (now - last) * rate / 1000) end
if tokens < 1 then return {-1, ''} end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'v', string.format('%.6f', tokens - 1))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('HSET', KEYS[3], 'ts', ARGV[1])
redis.call('XADD', KEYS[4], '*', 'n', seq, 'd', ARGV[5])
redis.call('ZADD', KEYS[5], seq, ARGV[5])
redis.call('SADD', KEYS[6], ARGV[6])
redis.call('SADD', KEYS[7], ARGV[6])
local ack = ARGV[7] .. '|' .. seq .. '|' .. ARGV[1]
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ack, 'EX', ARGV[4]) end
return {seq, ack}
`;

/**
 * A connection joins a room. KEYS: room members, room instances, instance holdings, stream, conv, user convs, instances.
 * ARGV: instance id, user id, holding field (one per connection and room), packed presence(join) event, conv.
 * Returns {onlineCount, lastSeq}; appends a presence event when this is the user's first connection
 * in the room. Idempotent: a repeated join of the same connection changes nothing.
 */
const JOIN = `
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  return {redis.call('HLEN', KEYS[1]), tonumber(redis.call('HGET', KEYS[5], 'seq')) or 0}
end
local c = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[3], ARGV[3], 1)
redis.call('SADD', KEYS[7], ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if c == 1 then redis.call('XADD', KEYS[4], '*', 'n', n, 'd', ARGV[4]) end
redis.call('SADD', KEYS[6], ARGV[5])
return {n, tonumber(redis.call('HGET', KEYS[5], 'seq')) or 0}
`;

/**
 * A connection leaves a room (by leave or close, or because its instance died). KEYS: room members,
 * room instances, holdings hash to debit, stream. ARGV: instance id, user id, holding field,
 * packed presence(leave) event. Only a join the holdings hash records is undone, so a late or
 * repeated leave cannot corrupt counts. Returns onlineCount.
 */
const LEAVE = `
if redis.call('HDEL', KEYS[3], ARGV[3]) == 0 then return redis.call('HLEN', KEYS[1]) end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if redis.call('HINCRBY', KEYS[1], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[2])
  local n = redis.call('HLEN', KEYS[1])
  redis.call('XADD', KEYS[4], '*', 'n', n, 'd', ARGV[4])
  return n
end
return redis.call('HLEN', KEYS[1])
`;

/** A user's connection opens on an instance (idempotent). KEYS: user instances, holdings, instances. ARGV: instance, field. */
const CONNECT = `
if redis.call('HSETNX', KEYS[2], ARGV[2], 1) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[1])
return 1
`;

/** A connection closes (idempotent). KEYS: user instances, holdings hash to debit. ARGV: instance, field. */
const DISCONNECT = `
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`;

export interface Scripts {
  imSend(keys: string[], argv: (string | number | Buffer)[]): Promise<[number, string]>;
  imJoin(keys: string[], argv: (string | number | Buffer)[]): Promise<[number, number]>;
  imLeave(keys: string[], argv: (string | number | Buffer)[]): Promise<number>;
  imConnect(keys: string[], argv: (string | number)[]): Promise<number>;
  imDisconnect(keys: string[], argv: (string | number)[]): Promise<number>;
}

export function defineScripts(redis: Redis): Redis & Scripts {
  const def = (name: string, lua: string, numberOfKeys: number) => redis.defineCommand(name, { lua, numberOfKeys });
  def("imSendRaw", SEND, 7);
  def("imJoinRaw", JOIN, 7);
  def("imLeaveRaw", LEAVE, 4);
  def("imConnectRaw", CONNECT, 3);
  def("imDisconnectRaw", DISCONNECT, 2);
  const r = redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const bind = (raw: string) => (keys: string[], argv: unknown[]) => r[raw](...keys, ...argv);
  return Object.assign(redis, {
    imSend: bind("imSendRaw"),
    imJoin: bind("imJoinRaw"),
    imLeave: bind("imLeaveRaw"),
    imConnect: bind("imConnectRaw"),
    imDisconnect: bind("imDisconnectRaw"),
  }) as Redis & Scripts;
}
