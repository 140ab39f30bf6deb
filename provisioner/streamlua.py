"""The Lua scripts of :mod:`provisioner.stream`, each one atomic step on one queue.

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
