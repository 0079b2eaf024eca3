-- Appends a batch of request, response and error log entries to three capped
-- lists (newest first) and trims each to ARGV[1] entries.
-- KEYS[1] requests, KEYS[2] responses, KEYS[3] errors.
-- ARGV[1] cap; ARGV[2..4] entries in each list's part of the batch; then the
-- entries, requests first. A batch is never resent, so running it twice
-- (a timed-out call executing late) cannot happen by retry.
local cap = tonumber(ARGV[1])
local index = 5
for list = 1, 3 do
  local count = tonumber(ARGV[list + 1])
  for i = index, index + count - 1 do
    redis.call('LPUSH', KEYS[list], ARGV[i])
  end
  index = index + count
  if count > 0 then
    redis.call('LTRIM', KEYS[list], 0, cap - 1)
  end
end
return index - 5
