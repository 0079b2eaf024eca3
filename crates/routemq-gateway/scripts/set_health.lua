-- Records a health probe's verdict on an instance that still exists.
-- KEYS[1] instance hash; ARGV[1] 'healthy' or 'unhealthy'.
-- Returns 1 when recorded, 0 when the instance is gone (never re-created).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'last_check_ms', now[1] * 1000 + math.floor(now[2] / 1000))
return 1
