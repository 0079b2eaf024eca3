-- Removes an instance. KEYS[1] instance hash; KEYS[2] instance set; ARGV[1] id.
-- Returns how many instances the service still has. Safe to run twice.
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('SCARD', KEYS[2])
