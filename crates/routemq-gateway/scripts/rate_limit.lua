-- Sliding-window log rate limit: at most ARGV[1] admissions in any window of
-- ARGV[2] ms, counted exactly across every worker. Time comes from Redis.
-- One call counts a batch of attempts in order, each exactly as if it were
-- a call of its own (a worker sends the attempts it has at once together).
-- KEYS the clients' logs (sorted sets: member = attempt id, score = ms); on a
-- cluster all in one slot.
-- ARGV[1] limit; ARGV[2] window in ms; ARGV[3] the Redis time (ms) after
-- which this call must not count ('' = none): a call that runs later (Redis
-- stalled, the worker gave up) changes nothing; ARGV[4] unused (GCRA's
-- burst); then per attempt: its log's index in KEYS, its attempt id (unique
-- per request).
-- Returns {now_ms, late (1: too late, nothing counted), then per attempt:
-- admitted (1/0), remaining, retry_after_ms}.
-- Safe to run twice: an attempt already in its log is admitted again, not recounted.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if ARGV[3] ~= '' and now > tonumber(ARGV[3]) then
  return {now, 1}
end

local function count(key, attempt)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local logged = redis.call('ZCARD', key)
  if redis.call('ZSCORE', key, attempt) then
    return 1, math.max(limit - logged, 0), 0
  end
  if logged < limit then
    redis.call('ZADD', key, now, attempt)
    redis.call('PEXPIRE', key, window)
    return 1, limit - logged - 1, 0
  end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return 0, 0, math.max(tonumber(oldest[2]) + window - now, 1)
end

local verdicts = {now, 0}
for i = 5, #ARGV, 2 do
  local admitted, remaining, retry_after = count(KEYS[tonumber(ARGV[i])], ARGV[i + 1])
  verdicts[#verdicts + 1] = admitted
  verdicts[#verdicts + 1] = remaining
  verdicts[#verdicts + 1] = retry_after
end
return verdicts
