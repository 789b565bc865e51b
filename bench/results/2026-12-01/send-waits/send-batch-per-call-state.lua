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
-- State read once per key and written back once after the loop: token buckets by rate key,
-- conversations by conv key (in first-use order, so the writes are in a stable order).
local buckets, bucketOrder = {}, {}
local convs, convOrder = {}, {}
local function bucket(k)
  local b = buckets[k]
  if b then return b end
  b = { tokens = burst, last = now, used = false }
  local v = redis.call('GET', k)
  if v then
    local sp = string.find(v, ' ', 1, true)
    if sp then
      b.last = tonumber(string.sub(v, 1, sp - 1)) or now
      b.tokens = tonumber(string.sub(v, sp + 1)) or burst
    end
  end
  buckets[k] = b
  bucketOrder[#bucketOrder + 1] = k
  return b
end
local function conv(k)
  local c = convs[k]
  if c then return c end
  local v = redis.call('HMGET', k, 'ep', 'seq')
  c = { fenced = v[1] == runId, seq = 0, n = 0, own = {}, ownOrder = {}, pend = {}, lists = {} }
  if c.fenced and v[2] then
    c.seq = tonumber(v[2])
    if not c.seq or c.seq ~= math.floor(c.seq) then error('seq of ' .. k .. ' is not an integer') end
  end
  convs[k] = c
  convOrder[#convOrder + 1] = k
  return c
end
local function accept(i)
  local idem = a[i + 1]
  if idem ~= '' then
    local prev = redis.call('GET', idem)
    if prev then return prev end
  end
  local c = conv(a[i + 3])
  if not c.fenced then return 'S' end
  local b = bucket(a[i])
  if now > b.last then
    b.tokens = math.min(burst, b.tokens + (now - b.last) * rate / 1000)
    b.last = now
  end
  if b.tokens < 1 then return '' end
  local seq = c.seq + 1
  local ev = a[i + 10]
  redis.call('XADD', a[i + 4], '*', 'n', seq, 'd', ev)
  -- In the stream: the message is accepted, whatever fails after this.
  c.seq = seq
  c.n = c.n + 1
  c.pendKey = a[i + 5]
  c.pend[#c.pend + 1] = seq
  c.pend[#c.pend + 1] = ev
  local f = a[i + 11]
  if not c.own[f] then
    c.ownOrder[#c.ownOrder + 1] = f
    c.lists[#c.lists + 1] = { a[i + 6], a[i + 7], a[i + 8] }
  end
  c.own[f] = seq
  b.tokens = b.tokens - 1
  b.used = true
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
local function store(k)
  local c = convs[k]
  if c.n == 0 then return end
  local h = { 'seq', c.seq, 'ts', nowS }
  for _, f in ipairs(c.ownOrder) do
    h[#h + 1] = f
    h[#h + 1] = c.own[f]
  end
  if redis.call('HSET', k, unpack(h)) > 0 then
    -- A new field: some sender's first message here (or the conversation's first). Their lists
    -- get it in this same atomic call, so the two are kept or lost together.
    for _, l in ipairs(c.lists) do
      redis.call('SADD', l[1], l[3])
      if l[2] ~= l[1] then redis.call('SADD', l[2], l[3]) end
    end
  end
  redis.call('ZADD', c.pendKey, unpack(c.pend))
end
for _, k in ipairs(convOrder) do
  local ok, err = pcall(store, k)
  if not ok then redis.log(redis.LOG_WARNING, 'bunchat send: ' .. tostring(type(err) == 'table' and err.err or err)) end
end
for _, k in ipairs(bucketOrder) do
  local b = buckets[k]
  if b.used then redis.call('SET', k, nowS .. ' ' .. string.format('%.6f', b.tokens), 'PX', rateTtl) end
end
return table.concat(out, ',')
