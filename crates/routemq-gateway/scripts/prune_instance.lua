-- Drops an instance id from its service's set once its hash has expired.
-- Checked and removed in one step: a listing that saw the hash missing must
-- not remove an instance that re-registered since (that would hide it).
-- KEYS[1] instance hash; KEYS[2] the service's instance set; KEYS[3] expiry
-- index; KEYS[4] the service's registry version.
-- ARGV[1] id; ARGV[2] a fresh version token.
-- Returns 1 when pruned, 0 when the instance is live again.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('SET', KEYS[4], ARGV[2])
end
return 1
