-- Removes an instance. KEYS[1] instance hash; KEYS[2] instance set; KEYS[3]
-- expiry index; KEYS[4] the service's registry version.
-- ARGV[1] id; ARGV[2] a fresh version token.
-- Returns how many instances the service still has. Safe to run twice: a
-- repeat removes nothing and leaves the version alone.
local removed = redis.call('DEL', KEYS[1]) + redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if removed > 0 then
  redis.call('SET', KEYS[4], ARGV[2])
end
return redis.call('SCARD', KEYS[2])
