-- Stores a service's last good reply to one request for the fallback, in a
-- cache capped at ARGV[3] entries per service: the oldest writes are evicted
-- first, so Redis memory stays bounded whatever requests clients vary.
-- KEYS[1] the entry (string); KEYS[2] the service's index (sorted set:
-- member = entry key, score = write time in ms). Both carry the service's
-- hash tag.
-- ARGV[1] the record; ARGV[2] ttl in ms; ARGV[3] max entries.
-- Returns the number of entries evicted. Safe to run twice: the second run
-- writes the same record and moves the entry's score.
local ttl = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local evicted = 0
local excess = redis.call('ZCARD', KEYS[2]) - cap
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', oldest[i])
    evicted = evicted + 1
  end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return evicted
