-- Extends a claim's lease while its worker still runs the request; a claim
-- that was finished, expired or taken by another worker is left alone, so
-- running it twice or late changes nothing.
-- KEYS[1] the request's key; ARGV[1] the claim value this worker stored;
-- ARGV[2] the new lease in ms. Returns 1 when renewed.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
