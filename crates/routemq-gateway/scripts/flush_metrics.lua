-- Adds one worker's batch of metric deltas to the cluster-wide totals.
-- KEYS[1] metrics hash; KEYS[2] this worker process's last-flushed sequence.
-- ARGV[1] batch sequence number (increasing per worker process);
-- ARGV[2] expiry of the sequence key in ms; then field, delta pairs.
-- A batch at or below the recorded sequence was applied already: a retried
-- or late-executed flush counts once.
local sequence = tonumber(ARGV[1])
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
if sequence <= applied then
  return 0
end
redis.call('SET', KEYS[2], sequence, 'PX', tonumber(ARGV[2]))
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
end
return 1
