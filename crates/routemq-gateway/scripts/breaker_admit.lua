-- Circuit breaker admission for one service, shared by every worker.
-- KEYS[1] breaker hash (state, opened_at); KEYS[2] live half-open probes
-- (sorted set: member = attempt id, score = admitted at, ms).
-- ARGV[1] recovery time in ms; ARGV[2] probes allowed at once while half open;
-- ARGV[3] probe lease in ms (a probe whose worker died frees its slot after it);
-- ARGV[4] attempt id; ARGV[5] the service's name, to announce transitions
-- on the `routemq:breakers` channel (workers keep the state locally).
-- Returns {state, verdict, retry_after_ms}: verdict 1 = admitted, 2 = admitted
-- as a half-open probe, 0 = refused.
-- open → half_open happens here, once, when the recovery time has passed.
-- Safe to run twice: an attempt that already holds a probe slot keeps it.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  return {'closed', 1, 0}
end
if state == 'open' then
  local reopen_at = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + tonumber(ARGV[1])
  if now < reopen_at then
    return {'open', 0, reopen_at - now}
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'half_open_at', now)
  redis.call('DEL', KEYS[2])
  state = 'half_open'
  if ARGV[5] then
    redis.call('PUBLISH', 'routemq:breakers', ARGV[5] .. ' half_open 0')
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  return {state, 2, 0}
end
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
  return {state, 2, 0}
end
return {state, 0, 1000}
