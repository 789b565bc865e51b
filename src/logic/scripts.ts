// Lua scripts: each runs atomically in Redis, which is what makes seq order equal stream order
// and keeps presence counters consistent when several connect instances and cleaners race.
// Also the writer of the send script's one packed argument.
import type Redis from "ioredis";
import type { RedisOptions } from "ioredis";

/**
 * The client options logic's Redis connection runs these scripts with: commands are
 * auto-pipelined (several in one socket write) except the send script, which is a whole batch
 * already and is written at once. ioredis flushes an auto-pipeline on setImmediate, and only
 * after the previous one's replies are all in: in a busy process (a node hosting connect and
 * task too) at 5,000 msgs/s that held each send batch 11-25 ms before Redis saw it, 2-8 ms
 * written at once (bench/journal/2026-12-01.md, "1 Dec 2026, 04:46–05:43").
 */
export const SCRIPT_CLIENT: RedisOptions = { enableAutoPipelining: true, autoPipeliningIgnoredCommands: ["imSendBatch"] };

/**
 * Accept a batch of messages, in order. No KEYS; ARGV[1] is one MessagePack array written by
 * SendBatchWriter (every item a str: Redis 7's cmsgpack cannot decode bin), holding
 *   now ms, rate/s, burst, deadline (ms since the epoch by Redis's clock, "0" for none), then per
 *   message SEND_FIELDS items: rate key, idem key (or ""), idem ttl s, conv key, stream key,
 *   pending key, sender convs key, other convs key, conv, message id, packed event, sender field
 *   ("s:<userId>").
 * A call that Redis starts running after the deadline (TIME) writes nothing and fails with
 * "LATE": a batch that waited in a socket buffer, or was re-sent after a reconnect, is refused
 * rather than stored after its sender was told UNAVAILABLE.
 * For each message, as if sent alone one after another: a repeated idem key gives its first
 * acceptance (also within the batch); a conversation whose counter was not checked against
 * MySQL by this Redis server in its current role (its "ep" field is not this server's EPOCH: a
 * restart, a restore from an older file or a failover happened since) is refused with "S" so the caller
 * seeds it (SEED_CONVS) and sends again, no token used; an empty token bucket (the rate key, a
 * string "<last ms> <tokens>" that expires once the bucket would be full again) rejects it;
 * otherwise the conversation's next seq is assigned, the event appended to the stream (first: a
 * message whose append fails uses no seq and no token) and the pending zset, and the acceptance
 * recorded under the idem key. The conversation hash's sender field gets the seq in the same HSET
 * as ts: the sender's own-send position (CONTRACT v1.1: a user's own send moves their readSeq;
 * logic/read.ts reads readSeq as the max of it and the explicit position). The conversation goes
 * into the sender's list (and a direct message's other party's) when that HSET adds a field,
 * i.e. on the sender's first message there.
 * Returns one string, the messages' results joined by ",": "id|seq|ts" (accepted, or first
 * acceptance of a duplicate), "" (rate limited), "S" (seed first) or "!" (a command failed,
 * logged by Redis; like an error of a one-message script, the message's earlier writes stay and
 * the next message still runs).
 * Keys are computed by the caller and not declared, which standalone Redis allows; Redis Cluster
 * would need them declared in KEYS and in one slot (hash tags).
 */
const SEND_FIELDS = 12;
/**
 * Lua expression: the seq fence's epoch of this Redis server, "<run_id>:<master_replid>". run_id
 * is new on every start of the process; master_replid is new on every promotion to primary, also
 * of a process that was the primary before (a demoted primary takes the new primary's data, where
 * counters may still carry its old run_id but lag what it had accepted and task persisted), and
 * when a primary drops its backlog after repl-backlog-ttl without replicas (then every counter is
 * checked once more: safe, one MySQL query per active conversation). A master restarted from an
 * RDB file may restore its master_replid, but its run_id is new. One INFO call with both sections.
 */
export const EPOCH =
  "(function() local i = redis.call('INFO', 'server', 'replication') return string.match(i, 'run_id:(%x+)') .. ':' .. string.match(i, 'master_replid:(%x+)') end)()";
const SEND_BATCH = `
local a = cmsgpack.unpack(ARGV[1])
local deadline = tonumber(a[4])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then
    return redis.error_reply('LATE send arrived after its deadline')
  end
end
local runId = ${EPOCH}
local nowS = a[1]
local now = tonumber(nowS)
local rate = tonumber(a[2])
local burst = tonumber(a[3])
local rateTtl = math.ceil(burst / rate * 1000) + 1000
local function accept(i)
  local idem = a[i + 1]
  if idem ~= '' then
    local prev = redis.call('GET', idem)
    if prev then return prev end
  end
  local c = redis.call('HMGET', a[i + 3], 'ep', 'seq')
  if c[1] ~= runId then return 'S' end
  local tokens, last = burst, now
  local b = redis.call('GET', a[i])
  if b then
    local sp = string.find(b, ' ', 1, true)
    if sp then
      last = tonumber(string.sub(b, 1, sp - 1)) or now
      tokens = tonumber(string.sub(b, sp + 1)) or burst
    end
  end
  if now > last then tokens = math.min(burst, tokens + (now - last) * rate / 1000) end
  if tokens < 1 then return '' end
  local cur = 0
  if c[2] then
    cur = tonumber(c[2])
    if not cur or cur ~= math.floor(cur) then error('seq of ' .. a[i + 3] .. ' is not an integer') end
  end
  local seq = cur + 1
  local ev = a[i + 10]
  -- The append first: a message it refuses (a stream key of another type) uses no seq and no token.
  redis.call('XADD', a[i + 4], '*', 'n', seq, 'd', ev)
  redis.call('SET', a[i], nowS .. ' ' .. string.format('%.6f', tokens - 1), 'PX', rateTtl)
  if redis.call('HSET', a[i + 3], 'seq', seq, 'ts', nowS, a[i + 11], seq) > 0 then
    -- A new field: the sender's first message here. Later ones find the conversation in the
    -- lists already: this same atomic call wrote both, so they are kept or lost together.
    redis.call('SADD', a[i + 6], a[i + 8])
    if a[i + 7] ~= a[i + 6] then redis.call('SADD', a[i + 7], a[i + 8]) end
  end
  redis.call('ZADD', a[i + 5], seq, ev)
  local ack = a[i + 9] .. '|' .. seq .. '|' .. nowS
  if idem ~= '' then redis.call('SET', idem, ack, 'EX', a[i + 2]) end
  return ack
end
local out = {}
local j = 0
for i = 5, #a, ${SEND_FIELDS} do
  j = j + 1
  local ok, res = pcall(accept, i)
  if ok then
    out[j] = res
  else
    out[j] = '!'
    redis.log(redis.LOG_WARNING, 'bunchat send: ' .. tostring(type(res) == 'table' and res.err or res))
  end
end
return table.concat(out, ',')
`;

/**
 * Builds SEND_BATCH's argument: a MessagePack array whose items are all str (bytes are written
 * as they are, so the packed events arrive byte-identical). Writes into one reused scratch
 * buffer and copies out only the finished blob; not reentrant, so begin() … finish() must run
 * without an await in between.
 */
export class SendBatchWriter {
  private buf = Buffer.allocUnsafe(1 << 16);
  private pos = 0;
  private items = 0;
  /** Messages added since begin(). */
  count = 0;

  /** deadlineMs: Redis-clock ms after which the call must not run; 0 for none. */
  begin(nowMs: string, ratePerSec: number, burst: number, deadlineMs = 0): void {
    this.pos = 5; // array32 header, filled in by finish()
    this.items = 0;
    this.count = 0;
    this.str(nowMs);
    this.str(String(ratePerSec));
    this.str(String(burst));
    this.str(String(deadlineMs));
  }

  /** One message; idemKey "" for none. The order is SEND_BATCH's. */
  add(rateKey: string, idemKey: string, idemTtlSec: string, convKey: string, streamKey: string, pendingKey: string, senderConvsKey: string, otherConvsKey: string, conv: string, id: string, event: Uint8Array, senderField: string): void {
    this.str(rateKey);
    this.str(idemKey);
    this.str(idemTtlSec);
    this.str(convKey);
    this.str(streamKey);
    this.str(pendingKey);
    this.str(senderConvsKey);
    this.str(otherConvsKey);
    this.str(conv);
    this.str(id);
    this.bytes(event);
    this.str(senderField);
    this.count++;
  }

  finish(): Buffer {
    const { buf, pos } = this;
    buf[0] = 0xdd;
    buf.writeUInt32BE(this.items, 1);
    const out = Buffer.allocUnsafe(pos);
    buf.copy(out, 0, 0, pos);
    return out;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }

  /** Writes a str header of `size` bytes (see headerSize) for len bytes at `at`. */
  private header(len: number, at: number, size: number): void {
    const b = this.buf;
    if (size === 1) b[at] = 0xa0 | len;
    else if (size === 2) {
      b[at] = 0xd9;
      b[at + 1] = len;
    } else if (size === 3) {
      b[at] = 0xda;
      b.writeUInt16BE(len, at + 1);
    } else {
      b[at] = 0xdb;
      b.writeUInt32BE(len, at + 1);
    }
  }

  private str(s: string): void {
    const n = s.length;
    this.reserve(n * 3 + 5);
    const b = this.buf;
    const at = this.pos;
    // ASCII (every key and id): copied char by char, no UTF-8 encoder call.
    let size = headerSize(n);
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      b[at + size + i] = c;
    }
    let len = n;
    if (i < n) {
      // Otherwise UTF-8 after a header sized for the worst case (MessagePack allows a longer one).
      size = headerSize(n * 3);
      len = b.write(s, at + size, "utf8");
    }
    this.header(len, at, size);
    this.pos = at + size + len;
    this.items++;
  }

  private bytes(v: Uint8Array): void {
    this.reserve(v.length + 5);
    const size = headerSize(v.length);
    this.header(v.length, this.pos, size);
    this.buf.set(v, this.pos + size);
    this.pos += size + v.length;
    this.items++;
  }
}

/** Bytes of the smallest MessagePack str header that can hold len bytes. */
const headerSize = (len: number) => (len < 32 ? 1 : len < 0x100 ? 2 : len < 0x10000 ? 3 : 5);

/**
 * A connection joins a room. KEYS: room members, room instances, instance holdings, stream, conv, user convs, instances.
 * ARGV: instance id, user id, holding field (one per connection and room), packed presence(join) event, conv,
 * packed route(room) event.
 * Returns {onlineCount, lastSeq, ep} (ep: the seq fence's epoch on the conv hash, nil if unset); appends a presence event when this is the user's first connection
 * in the room, and before it a route event when the instance did not hold the room yet (task caches
 * room routes and drops its entry when it reads one: the stream orders it before every later
 * message). Idempotent: a repeated join of the same connection changes nothing.
 */
const JOIN = `
local function counter()
  local v = redis.call('HMGET', KEYS[5], 'seq', 'ep')
  return tonumber(v[1]) or 0, v[2]
end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  local seq, ep = counter()
  return {redis.call('HLEN', KEYS[1]), seq, ep}
end
local c = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then redis.call('XADD', KEYS[4], '*', 'n', 0, 'd', ARGV[6]) end
redis.call('HSET', KEYS[3], ARGV[3], 1)
redis.call('SADD', KEYS[7], ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if c == 1 then redis.call('XADD', KEYS[4], '*', 'n', n, 'd', ARGV[4]) end
redis.call('SADD', KEYS[6], ARGV[5])
local seq, ep = counter()
return {n, seq, ep}
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

/**
 * Marks conversations as checked against MySQL by this Redis server process. No KEYS; ARGV: per
 * conversation conv key, MySQL's highest seq, its ts ("" if none). A conversation not yet marked
 * gets seq = max(its seq here, MySQL's) (and that ts when MySQL's is higher) and ep = EPOCH, so
 * no seq MySQL holds is handed out again after Redis lost its tail. Returns how many were raised.
 */
const SEED_CONVS = `
local runId = ${EPOCH}
local raised = 0
for i = 1, #ARGV, 3 do
  local k = ARGV[i]
  if redis.call('HGET', k, 'ep') ~= runId then
    local m = tonumber(ARGV[i + 1])
    if m > (tonumber(redis.call('HGET', k, 'seq')) or 0) then
      redis.call('HSET', k, 'seq', m)
      if ARGV[i + 2] ~= '' then redis.call('HSET', k, 'ts', ARGV[i + 2]) end
      raised = raised + 1
    end
    redis.call('HSET', k, 'ep', runId)
  end
end
return raised
`;

export interface Scripts {
  /** SEND_BATCH: blob as described there; resolves to the joined results. */
  imSendBatch(blob: Buffer): Promise<string>;
  /** SEED_CONVS: [convKey, maxSeq, ts|""]… flattened; resolves to how many counters were raised. */
  imSeedConvs(...argv: (string | number)[]): Promise<number>;
  /** EPOCH: the "ep" a counter checked by this Redis server in its current role carries. */
  imEpoch(): Promise<string>;
  imJoin(keys: string[], argv: (string | number | Buffer)[]): Promise<[number, number, string | null]>;
  imLeave(keys: string[], argv: (string | number | Buffer)[]): Promise<number>;
  imConnect(keys: string[], argv: (string | number)[]): Promise<number>;
  imDisconnect(keys: string[], argv: (string | number)[]): Promise<number>;
}

export function defineScripts(redis: Redis): Redis & Scripts {
  const def = (name: string, lua: string, numberOfKeys: number) => redis.defineCommand(name, { lua, numberOfKeys });
  def("imSendBatch", SEND_BATCH, 0);
  def("imSeedConvs", SEED_CONVS, 0);
  def("imEpoch", `return ${EPOCH}`, 0);
  def("imJoinRaw", JOIN, 7);
  def("imLeaveRaw", LEAVE, 4);
  def("imConnectRaw", CONNECT, 3);
  def("imDisconnectRaw", DISCONNECT, 2);
  const r = redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const bind = (raw: string) => (keys: string[], argv: unknown[]) => r[raw](...keys, ...argv);
  return Object.assign(redis, {
    imJoin: bind("imJoinRaw"),
    imLeave: bind("imLeaveRaw"),
    imConnect: bind("imConnectRaw"),
    imDisconnect: bind("imDisconnectRaw"),
  }) as Redis & Scripts;
}
