-- Adds one worker's batch of successful calls to a service's recent
-- successes, for a breaker in failure-rate mode. Successes are counted per
-- worker and flushed in batches, so a closed breaker costs no Redis call per
-- success.
-- KEYS[1] recent successes (hash: time bucket → count); KEYS[2] this worker
-- process's last-flushed batch for the service.
-- ARGV[1] batch sequence (increasing per worker process); ARGV[2] successes;
-- ARGV[3] bucket length in ms; ARGV[4] failure window in ms.
-- Safe to run twice: a batch at or below the recorded sequence was applied.
local sequence = tonumber(ARGV[1])
if sequence <= tonumber(redis.call('GET', KEYS[2]) or '0') then
  return 0
end
local window = tonumber(ARGV[4])
redis.call('SET', KEYS[2], sequence, 'PX', window)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket_ms = tonumber(ARGV[3])
local bucket = math.floor(now / bucket_ms)
redis.call('HINCRBY', KEYS[1], bucket, tonumber(ARGV[2]))
local oldest = math.floor((now - window) / bucket_ms)
local fields = redis.call('HKEYS', KEYS[1])
for i = 1, #fields do
  if tonumber(fields[i]) < oldest then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
redis.call('PEXPIRE', KEYS[1], window)
return 1
