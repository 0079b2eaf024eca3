-- GCRA (generic cell rate algorithm) rate limit: ARGV[1] admissions per
-- ARGV[2] ms on average, with bursts of up to ARGV[5], in O(1) state per
-- client whatever the limit. Time comes from Redis, in microseconds (a limit
-- of 100 000/s is a 10 us emission interval).
-- KEYS[1] the client's state (hash: tat = theoretical arrival time in us,
--   last = the last admitted attempt id).
-- ARGV[1] limit; ARGV[2] window in ms; ARGV[3] attempt id, unique per request;
-- ARGV[4] the Redis time (ms) after which this call must not count ('' = none);
-- ARGV[5] burst (admissions at once from a rested client).
-- Returns {admitted (1/0, or 2 when too late), remaining, retry_after_ms, now_ms}.
-- Safe to run twice: a repeat of the last admitted attempt is admitted again,
-- not recounted.
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2]) * 1000
local burst = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now / 1000)
if ARGV[4] ~= '' and now_ms > tonumber(ARGV[4]) then
  return {2, 0, 0, now_ms}
end
local interval = window_us / limit
local tolerance = interval * (burst - 1)
local state = redis.call('HMGET', KEYS[1], 'tat', 'last')
local tat = tonumber(state[1]) or now
if tat < now then
  tat = now
end
if state[2] == ARGV[3] then
  return {1, math.max(math.floor((now + tolerance - tat + interval) / interval), 0), 0, now_ms}
end
if tat - now > tolerance then
  local retry_after = math.ceil((tat - tolerance - now) / 1000)
  return {0, 0, math.max(retry_after, 1), now_ms}
end
tat = tat + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat), 'last', ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil((tat - now) / 1000) + 1)
return {1, math.floor((now + tolerance - tat + interval) / interval), 0, now_ms}
