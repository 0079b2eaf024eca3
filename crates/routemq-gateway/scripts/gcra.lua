-- GCRA (generic cell rate algorithm) rate limit: ARGV[1] admissions per
-- ARGV[2] ms on average, with bursts of up to ARGV[4], in O(1) state per
-- client whatever the limit. Time comes from Redis, in microseconds (a limit
-- of 100 000/s is a 10 us emission interval).
-- One call counts a batch of attempts in order, each exactly as if it were
-- a call of its own (a worker sends the attempts it has at once together).
-- KEYS the clients' states (hash: tat = theoretical arrival time in us,
--   last = the last admitted attempt id); on a cluster all in one slot.
-- ARGV[1] limit; ARGV[2] window in ms; ARGV[3] the Redis time (ms) after
-- which this call must not count ('' = none); ARGV[4] burst (admissions at
-- once from a rested client); then per attempt: its state's index in KEYS,
-- its attempt id (unique per request).
-- Returns {now_ms, late (1: too late, nothing counted), then per attempt:
-- admitted (1/0), remaining, retry_after_ms}.
-- Safe to run twice: a repeat of a client's last admitted attempt is
-- admitted again, not recounted.
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2]) * 1000
local burst = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now / 1000)
if ARGV[3] ~= '' and now_ms > tonumber(ARGV[3]) then
  return {now_ms, 1}
end
local interval = window_us / limit
local tolerance = interval * (burst - 1)

local function count(key, attempt)
  local state = redis.call('HMGET', key, 'tat', 'last')
  local tat = tonumber(state[1]) or now
  if tat < now then
    tat = now
  end
  if state[2] == attempt then
    return 1, math.max(math.floor((now + tolerance - tat + interval) / interval), 0), 0
  end
  if tat - now > tolerance then
    return 0, 0, math.max(math.ceil((tat - tolerance - now) / 1000), 1)
  end
  tat = tat + interval
  redis.call('HSET', key, 'tat', string.format('%.0f', tat), 'last', attempt)
  redis.call('PEXPIRE', key, math.ceil((tat - now) / 1000) + 1)
  return 1, math.floor((now + tolerance - tat + interval) / interval), 0
end

local verdicts = {now_ms, 0}
for i = 5, #ARGV, 2 do
  local admitted, remaining, retry_after = count(KEYS[tonumber(ARGV[i])], ARGV[i + 1])
  verdicts[#verdicts + 1] = admitted
  verdicts[#verdicts + 1] = remaining
  verdicts[#verdicts + 1] = retry_after
end
return verdicts
