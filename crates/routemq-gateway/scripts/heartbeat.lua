-- Refreshes an instance's heartbeat and expiry; never re-creates an instance
-- that expired or was deregistered. Changes nothing workers re-read: the
-- registry version stays, so heartbeats cost workers nothing.
-- KEYS[1] instance hash; KEYS[2] the service's expiry index; ARGV[1] id.
-- Returns 1 when refreshed, 0 when the instance is not registered.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', KEYS[1], 'last_heartbeat_ms', now_ms)
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl_ms') or '0')
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now_ms + ttl, ARGV[1])
end
return 1
