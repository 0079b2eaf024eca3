-- Keeps one worker process in the live-worker set and counts the set, so
-- per-worker shares of a cluster limit follow the number of workers.
-- KEYS[1] the set (a sorted set: member = process id, score = expiry ms);
-- ARGV[1] the process id; ARGV[2] how long the entry lives without renewal,
-- in ms; ARGV[3] '1' to join or renew, '0' to leave.
-- Returns the live workers after this call. Safe to run twice.
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
