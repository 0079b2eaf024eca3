-- Claims a request for one execution, or returns what an earlier execution
-- left: its claim ('pending:…') while it runs, 'done:…' once answered.
-- KEYS[1] the request's key; ARGV[1] the claim value to store;
-- ARGV[2] how long a claim may stay pending, in ms.
-- Returns false when this call made the claim.
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return false
