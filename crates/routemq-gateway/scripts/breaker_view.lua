-- A breaker's state as a worker keeps it locally: read-only.
-- KEYS[1] breaker hash (state, opened_at). ARGV[1] recovery time in ms.
-- Returns {state, reopen_in_ms}: how long an open breaker stays open.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= 'open' then
  return {state, 0}
end
local reopen_at = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + tonumber(ARGV[1])
return {state, math.max(reopen_at - now, 0)}
