-- Completes a claim made by claim_request.lua: stores the outcome for replay,
-- or releases the claim so a retry runs again (ARGV[2] empty). Only the
-- holder of the claim may do either, so running it twice, or late after the
-- claim expired and another worker claimed, changes nothing.
-- KEYS[1] the request's key; ARGV[1] the claim value this worker stored;
-- ARGV[2] the outcome or ''; ARGV[3] how long to keep it, in ms.
-- Returns 1 when applied.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
end
return 1
