-- Records a health probe's verdict on an instance that still exists, and
-- bumps the service's registry version only when the status changes, so a
-- steady verdict costs workers nothing to follow.
-- KEYS[1] instance hash; KEYS[2] the service's registry version.
-- ARGV[1] 'healthy' or 'unhealthy'; ARGV[2] a fresh version token.
-- Returns 2 when the status changed, 1 when it was already so, 0 when the
-- instance is gone (never re-created). Safe to run twice.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  return 1
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_changed_ms', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('SET', KEYS[2], ARGV[2])
return 2
