-- Records the outcome of a call the breaker admitted; every transition out
-- of closed and half_open happens here, atomically.
-- KEYS[1] breaker hash; KEYS[2] live half-open probes; KEYS[3] recent
-- failures (sorted set: member = attempt id, score = ms); KEYS[4] recent
-- successes (hash: time bucket → count, written by breaker_successes.lua).
-- ARGV[1] outcome: success | failure | release (never sent);
-- ARGV[2] attempt id; ARGV[3] failures that open the breaker (0: no count
-- threshold); ARGV[4] failure window in ms; ARGV[5] failure rate that opens
-- it (0: no rate threshold); ARGV[6] calls the rate needs in the window;
-- ARGV[7] success bucket length in ms; ARGV[8] the service's name and
-- ARGV[9] the recovery time in ms, to announce transitions on the
-- `routemq:breakers` channel as `NAME STATE REOPEN_IN_MS` (workers keep the
-- state locally and refuse while open without asking Redis).
-- Returns the state afterwards.
-- closed:    a failure is logged; the count or the rate reached within the
--            window → open.
-- half_open: only a live probe's outcome counts: success → closed, failure → open.
-- open:      late outcomes are ignored.
-- Safe to run twice: failures are logged by attempt id, and a second
-- outcome for a probe finds it gone.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local outcome = ARGV[1]
local function announce(state, reopen_in)
  if ARGV[8] then
    redis.call('PUBLISH', 'routemq:breakers', ARGV[8] .. ' ' .. state .. ' ' .. reopen_in)
  end
end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if outcome == 'release' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return state
end
if state == 'half_open' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
    return state
  end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  if outcome == 'success' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', now)
    announce('closed', 0)
    return 'closed'
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  announce('open', ARGV[9] or 0)
  return 'open'
end
if state == 'closed' and outcome == 'failure' then
  local window = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[3], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[3], window)
  local failures = redis.call('ZCARD', KEYS[3])
  local threshold = tonumber(ARGV[3])
  local open = threshold > 0 and failures >= threshold
  local rate = tonumber(ARGV[5])
  if not open and rate > 0 then
    local oldest = math.floor((now - window) / tonumber(ARGV[7]))
    local successes = 0
    local buckets = redis.call('HGETALL', KEYS[4])
    for i = 1, #buckets, 2 do
      if tonumber(buckets[i]) >= oldest then
        successes = successes + tonumber(buckets[i + 1])
      end
    end
    local calls = failures + successes
    open = calls >= tonumber(ARGV[6]) and failures >= rate * calls
  end
  if open then
    redis.call('DEL', KEYS[3], KEYS[4])
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
    announce('open', ARGV[9] or 0)
    return 'open'
  end
end
return state
