-- Registers or re-registers one instance of a service.
-- KEYS[1] instance hash; KEYS[2] the service's instance set; KEYS[3] the
-- service's expiry index (a sorted set: id scored by expiry in ms, +inf for
-- no expiry); KEYS[4] the service's registry version.
-- ARGV: instance id, service name, url, health check url, ttl in ms (0 = no
-- expiry), a fresh version token.
-- Idempotent: a repeat overwrites the same fields with the same values.
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local registered = redis.call('HGET', KEYS[1], 'registered_at_ms') or now_ms
redis.call('HSET', KEYS[1],
  'instance_id', ARGV[1],
  'service_name', ARGV[2],
  'url', ARGV[3],
  'health_check_url', ARGV[4],
  'registered_at_ms', registered,
  'last_heartbeat_ms', now_ms,
  'ttl_ms', ARGV[5],
  'status', 'healthy')
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[3], now_ms + ttl, ARGV[1])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', KEYS[3], '+inf', ARGV[1])
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[4], ARGV[6])
return now_ms
