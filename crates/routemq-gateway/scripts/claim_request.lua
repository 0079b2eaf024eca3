-- Claims a request for one execution, or returns what an earlier execution
-- left: its claim ('pending:…') while it runs, 'done:…' once answered.
-- A claim is a lease: it expires after ARGV[2] ms unless its worker renews
-- it (renew_claim.lua), so a dead worker's claim frees within one lease and
-- a retry then runs. Every claim counts an attempt in KEYS[2], which outlives
-- released and expired claims, so the upstream learns the request id may have
-- been sent before (X-Request-Attempt).
-- KEYS[1] the request's key; KEYS[2] its attempt counter (same hash tag);
-- ARGV[1] the claim value; ARGV[2] the lease in ms; ARGV[3] how long the
-- attempt counter is kept, in ms (the replay window).
-- Returns the attempt number (an integer) when this call made the claim,
-- else the existing record (a string).
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
local attempt = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return attempt
