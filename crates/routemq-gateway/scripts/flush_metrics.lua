-- Adds one worker's batch of metric deltas to the cluster-wide totals.
-- KEYS[1] metrics hash; KEYS[2] batch marker key (unique per batch);
-- ARGV[1] marker expiry in ms; then field, delta pairs.
-- The marker makes a retried or late-executed batch count once.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[1])) == false then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
end
return 1
