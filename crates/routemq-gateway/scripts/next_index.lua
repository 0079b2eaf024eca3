-- Leases the next LEASE values of a service's shared round-robin counter.
-- KEYS[1] counter key; ARGV[1] lease size (>= 1); ARGV[2] idle expiry in ms.
-- Returns the counter after the increment: the caller owns (result - lease, result].
-- Running it twice only skips values, which round robin tolerates.
local lease = tonumber(ARGV[1])
local value = redis.call('INCRBY', KEYS[1], lease)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return value
