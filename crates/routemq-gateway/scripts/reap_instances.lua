-- Removes a service's expired instances (their hashes lapsed without a
-- heartbeat) and bumps the service's registry version when anything changed.
-- Run by one worker per service per probe interval; costs O(1) commands
-- plus one per expired instance.
-- KEYS[1] the instance set; KEYS[2] the expiry index; KEYS[3] the service's
-- registry version. ARGV[1] the instance hash name without its id (the same
-- hash tag as KEYS, so the same cluster slot); ARGV[2] at most this many
-- expired instances per call; ARGV[3] a fresh version token.
-- Also repairs the index after registrants that predate it: one that
-- registered (or heartbeated) without indexing, or deregistered without
-- unindexing, leaves the set and the index with different sizes.
-- Returns how many changes were made. Safe to run twice.
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local changes = 0

-- Re-scores a live instance from its hash's own expiry; removes a gone one.
local function settle(id)
  local pttl = redis.call('PTTL', ARGV[1] .. id)
  if pttl == -2 then
    redis.call('ZREM', KEYS[2], id)
    return redis.call('SREM', KEYS[1], id)
  end
  if pttl == -1 then
    redis.call('ZADD', KEYS[2], '+inf', id)
  else
    redis.call('ZADD', KEYS[2], now_ms + pttl, id)
  end
  return 0
end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  changes = changes + settle(id)
end

if redis.call('SCARD', KEYS[1]) ~= redis.call('ZCARD', KEYS[2]) then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if not redis.call('ZSCORE', KEYS[2], id) then
      -- Registered unseen: workers must re-read the service either way.
      settle(id)
      changes = changes + 1
    end
  end
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('SISMEMBER', KEYS[1], id) == 0 then
      redis.call('ZREM', KEYS[2], id)
      changes = changes + 1
    end
  end
end

if changes > 0 then
  redis.call('SET', KEYS[3], ARGV[3])
end
return changes
