-- Stores an API key record under the key's SHA-256 and bumps the version
-- workers poll, so they reload the key set.
-- KEYS[1] keys hash; KEYS[2] version counter. ARGV[1] key hash; ARGV[2] record JSON.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
