"""The Lua scripts of :mod:`provisioner.queue.streams`, each one atomic step on one queue.

Every script touches only keys of one queue (one hash tag, one Cluster slot),
passed in ``KEYS``. A settle acknowledges first: a message acknowledged already
was settled already, and is not recorded twice. Acknowledging and deleting use
``pcall``: the result must be recorded even when the group has vanished (Redis
restarted without persistence).
"""

from __future__ import annotations

# KEYS: specs, results, outcomes.
# ARGV: group, message id, spec key, record, is_success ("1"/"0"), exists record.
# Returns the record published, or nil when the message was settled already (a
# retried call whose first reply was lost, or a worker that took the message
# over and finished first): one record per message, whatever is retried.
SETTLE_LUA = """
local acked = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return false end
local record = ARGV[4]
if ARGV[5] == '1' and redis.call('HSETNX', KEYS[3], ARGV[3], record) == 0 then
  -- another delivery of this spec settled first: it was not created twice
  record = ARGV[6]
end
redis.call('XADD', KEYS[2], '*', 'record', record)
redis.pcall('XDEL', KEYS[1], ARGV[2])
return record
"""

# KEYS: specs, dead.
# ARGV: group, message id, then the dead letter's field/value pairs.
# Returns 0 (and writes nothing) when the message was settled already.
DEAD_LETTER_LUA = """
local acked = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.pcall('XDEL', KEYS[1], ARGV[2])
return 1
"""

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
