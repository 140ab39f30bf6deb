"""The Lua scripts of :mod:`provisioner.queue.streams`, each one atomic step on one queue.

Every script touches only keys of one queue (one hash tag, one Cluster slot),
passed in ``KEYS``. A settle acknowledges first: a message acknowledged already
was settled already, and is not recorded twice. Acknowledging and deleting use
``pcall``: the result must be recorded even when the group has vanished (Redis
restarted without persistence).
"""

from __future__ import annotations

# Lua that sets ``cap`` to XADD's trimming arguments from ARGV[n] (kind: '', 'count'
# or 'age') and ARGV[n + 1] (entries, or milliseconds of age on Redis's clock).
_CAP = """
local function trimming(kind, limit)
  if kind == 'count' then return {'MAXLEN', '~', limit} end
  if kind == 'age' then
    local clock = redis.call('TIME')
    local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    return {'MINID', '~', string.format('%.0f', now_ms - tonumber(limit))}
  end
  return {}
end
local function xadd(key, cap, ...)
  local args = {'XADD', key}
  for _, value in ipairs(cap) do args[#args + 1] = value end
  args[#args + 1] = '*'
  for _, value in ipairs({...}) do args[#args + 1] = value end
  return redis.call(unpack(args))
end
"""

# Settles a batch of messages, each as the single-message steps did.
# KEYS: specs, results, failures (hash: the pool's --max-failures tally), today's
#       outcome bucket, then every other bucket a lookup reads.
# ARGV: group, results trim kind, trim limit, the bucket's expiry (Unix s), then seven
#       per message: id, spec key, record, is_success ("1"/"0"), exists record,
#       outcome, is_permanent ("1": a failure retrying cannot fix).
# Returns {published, failed, finished}: per message the record published, or nil when
# it was settled already (a retried call whose first reply was lost, or a worker that
# took the message over and finished first), so one record per message whatever is
# retried; then the pool's tally after the batch: failures counted, records published.
SETTLE_LUA = (
    _CAP
    + """
local group, cap = ARGV[1], trimming(ARGV[2], ARGV[3])
local published, remembered, finished, failed = {}, false, 0, 0
for i = 5, #ARGV, 7 do
  local id, key, record = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.pcall('XACK', KEYS[1], group, id) == 0 then
    published[#published + 1] = false
  else
    if ARGV[i + 3] == '1' then
      local known = false
      for k = 4, #KEYS do
        if redis.call('HEXISTS', KEYS[k], key) == 1 then known = true break end
      end
      if known then
        -- another delivery of this spec settled first: it was not created twice
        record = ARGV[i + 4]
      else
        redis.call('HSET', KEYS[4], key, ARGV[i + 5])
        remembered = true
      end
    end
    xadd(KEYS[2], cap, 'record', record)
    redis.pcall('XDEL', KEYS[1], id)
    published[#published + 1] = record
    finished = finished + 1
    if ARGV[i + 6] == '1' then failed = failed + 1 end
  end
end
if remembered then redis.call('EXPIREAT', KEYS[4], ARGV[4]) end
local tally = {
  redis.call('HINCRBY', KEYS[3], 'failed', failed),
  redis.call('HINCRBY', KEYS[3], 'finished', finished),
}
return {published, tally[1], tally[2]}
"""
)

# KEYS: the outcome buckets, newest first. ARGV: spec keys.
# Returns, per spec key, the outcome remembered for it, or nil.
LOOKUP_LUA = """
local found = {}
for i = 1, #ARGV do
  local value = false
  for k = 1, #KEYS do
    value = redis.call('HGET', KEYS[k], ARGV[i])
    if value then break end
  end
  found[i] = value
end
return found
"""

# KEYS: specs, dead.
# ARGV: group, message id, trim kind, trim limit, then the letter's field/value pairs.
# Returns 0 (and writes nothing) when the message was settled already.
DEAD_LETTER_LUA = (
    _CAP
    + """
local acked = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return 0 end
xadd(KEYS[2], trimming(ARGV[3], ARGV[4]), unpack(ARGV, 5))
redis.pcall('XDEL', KEYS[1], ARGV[2])
return 1
"""
)

# GCRA on Redis's clock, in microseconds.
# KEYS: rate. ARGV: interval between sends (µs), burst.
# Stores the theoretical arrival time (TAT) of the next send; returns the wait (µs).
RESERVE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
-- keep the state a second beyond the reserved time, so an idle queue forgets it
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
local wait = new_tat - burst * interval - now
if wait < 0 then return 0 end
return math.floor(wait)
"""

# A pool's adaptive rate: provisioner.pacing.adaptive.step, the same steps in the same
# order, on Redis's clock (seconds), then a GCRA reservation at the rate learnt.
# KEYS: rate (the GCRA time, µs), pace (hash: the controller's state).
# ARGV: start, min, max, beta, C, ramp_s, tolerance, window_s, answered gaps,
#       pace TTL (ms), epoch, clean answers, throttles (heard since the caller's
#       last reservation, all sent in that epoch; other epochs' are ignored).
# Returns {wait (µs), epoch, rate (a string: Redis truncates Lua numbers)}.
ADAPT_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local a = {}
for i = 1, 13 do a[i] = tonumber(ARGV[i]) end
local start, min_rate, max_rate, beta, scale, ramp, tolerance, window, gaps,
  ttl_ms, epoch, clean, throttled = unpack(a)
local s = {}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do s[flat[i]] = tonumber(flat[i + 1]) end
if s.rate == nil then
  s = {rate = start, epoch = 0, kept = 1, cut_at = now, grown_at = now,
       clean = 0, throttled = 0, counted_at = now, gap = 1 / start}
end
local function clamp(rate) return math.min(max_rate, math.max(min_rate, rate)) end
if epoch == s.epoch and clean + throttled > 0 then
  local answers = clean + throttled
  if s.answered_at then
    local gap = math.min(now - s.answered_at, window) / answers
    local weight = 1 - (1 - 1 / gaps) ^ answers
    s.gap = math.max(1 / max_rate, s.gap + (gap - s.gap) * weight)
  end
  s.answered_at = now
  local keep = math.exp(-math.max(0, now - s.counted_at) / window)
  s.clean = s.clean * keep + clean
  s.throttled = s.throttled * keep + throttled
  s.counted_at = now
  local expected = tolerance * (s.clean + s.throttled)
  if throttled > 0 and s.throttled > expected + 2 * math.sqrt(expected) + 1 then
    local base = math.min(s.rate, 1 / s.gap)
    local kept = math.max(beta, s.clean / (s.clean + s.throttled))
    s.rate, s.epoch, s.w_max, s.kept, s.cut_at = clamp(base * kept), s.epoch + 1, base, kept, now
    s.clean, s.throttled = 0, 0
  elseif clean > 0 then
    local target = nil
    if s.w_max then
      local k = (s.w_max * (1 - s.kept) / scale) ^ (1 / 3)
      target = scale * (now - s.cut_at - k) ^ 3 + s.w_max
    elseif now - s.grown_at >= ramp then
      target = 2 * s.rate
    end
    if target then
      s.rate = clamp(math.min(target, math.max(s.rate, 2 / s.gap)))
      s.grown_at = now
    end
  end
end
local fields = {}
for name, value in pairs(s) do
  fields[#fields + 1] = name
  fields[#fields + 1] = string.format('%.17g', value)
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], ttl_ms)
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now_us then slot = now_us end
local next_slot = slot + 1000000 / s.rate
-- keep the schedule a second beyond the reserved time, so an idle queue forgets it
redis.call('SET', KEYS[1], string.format('%.0f', next_slot), 'PX',
  math.ceil((next_slot - now_us) / 1000) + 1000)
return {math.floor(slot - now_us), s.epoch, string.format('%.17g', s.rate)}
"""

# Gives a message back to the pool: a worker that stops before it sent the message's
# request queues it again at the stream's end (same fields) and drops its delivery, so
# another worker takes it at once instead of after --claim-idle.
# KEYS: specs. ARGV: group, message id, then the message's field/value pairs.
# Returns the new entry's id, or nil (and writes nothing) when it was settled already.
RELEASE_LUA = """
if redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.pcall('XDEL', KEYS[1], ARGV[2])
return id
"""

# KEYS: specs, dead.
# ARGV: the dead letter's entry id, then the original message's field/value pairs.
# Returns the new entry's id, or nil (and writes nothing) when the dead letter is
# gone already (another replay or a purge took it): a letter is replayed once.
REPLAY_LUA = """
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[2], ARGV[1])
return id
"""
