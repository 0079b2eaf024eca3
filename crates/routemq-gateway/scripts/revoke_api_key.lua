-- Removes an API key and bumps the version workers poll.
-- KEYS[1] keys hash; KEYS[2] version counter. ARGV[1] key hash.
-- Returns 1 if the key existed. Safe to run twice.
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return removed
