-- Sliding-window log rate limit: at most ARGV[1] admissions in any window of
-- ARGV[2] ms, counted exactly across every worker. Time comes from Redis.
-- KEYS[1] the client's log (sorted set: member = attempt id, score = ms).
-- ARGV[1] limit; ARGV[2] window in ms; ARGV[3] attempt id, unique per request;
-- ARGV[4] the Redis time (ms) after which this call must not count ('' = none):
-- a call that runs later (Redis stalled, the worker gave up) changes nothing.
-- Returns {admitted (1/0, or 2 when too late), remaining, retry_after_ms, now_ms}.
-- Safe to run twice: an attempt already in the log is admitted again, not recounted.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if ARGV[4] ~= '' and now > tonumber(ARGV[4]) then
  return {2, 0, 0, now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, math.max(limit - count, 0), 0, now}
end
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry_after = tonumber(oldest[2]) + window - now
return {0, 0, math.max(retry_after, 1), now}
