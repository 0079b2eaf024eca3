-- Records a health probe's verdict on an instance that still exists. The
-- prober calls it only when the verdict differs from what it last read, so
-- the service's version moves either way: when the status was already so,
-- the prober's view (and likely other workers') was stale — e.g. written by
-- a worker from before version tokens — and re-reading corrects it.
-- KEYS[1] instance hash; KEYS[2] the service's registry version.
-- ARGV[1] 'healthy' or 'unhealthy'; ARGV[2] a fresh version token.
-- Returns 2 when the status changed, 1 when it was already so, 0 when the
-- instance is gone (never re-created). Safe to run twice.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  return 1
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_changed_ms', now[1] * 1000 + math.floor(now[2] / 1000))
return 2
