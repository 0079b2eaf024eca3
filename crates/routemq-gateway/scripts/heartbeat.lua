-- Refreshes an instance's heartbeat and expiry; never re-creates an instance
-- that expired or was deregistered. KEYS[1] instance hash.
-- Returns 1 when refreshed, 0 when the instance is not registered.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'last_heartbeat_ms', now[1] * 1000 + math.floor(now[2] / 1000))
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl_ms') or '0')
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
