-- Keeps one worker process in the live-worker set and counts the set, so
-- per-worker shares of a cluster limit follow the number of workers; and in
-- the prober set, over which workers share the health probes.
-- KEYS[1] the live-worker set, KEYS[2] the prober set (sorted sets: member =
-- process id, score = expiry ms). Workers from before the prober set renew
-- only KEYS[1]: they probe under per-instance locks, and count as workers
-- but are given no probes.
-- ARGV[1] the process id; ARGV[2] how long the entry lives without renewal,
-- in ms; ARGV[3] '1' to join or renew, '0' to leave.
-- Returns the live workers after this call, then the live probers' ids.
-- Safe to run twice.
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if ARGV[3] == '1' then
    redis.call('ZADD', key, now_ms + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[2]))
  else
    redis.call('ZREM', key, ARGV[1])
  end
end
local reply = redis.call('ZRANGE', KEYS[2], 0, -1)
table.insert(reply, 1, redis.call('ZCARD', KEYS[1]))
return reply
