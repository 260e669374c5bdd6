-- HXP rate limiter: two GCRA token buckets (requests, tokens) per key, in microseconds.
-- Mirrors limits.Decide and limits.ChargeState in Go; keep them in step.
--
-- KEYS[1]  the bucket hash: r = request debt, t = token debt (both in µs), at = last update
-- ARGV[1]  "allow" or "charge"
-- ARGV[2]  period in µs
-- ARGV[3]  request limit (0 = unlimited)
-- ARGV[4]  token limit (0 = unlimited)
-- ARGV[5]  request cost
-- ARGV[6]  token cost (for "charge": tokens to charge, negative to refund)
--
-- "allow" returns {allowed, too_large, req_remaining, req_reset_us, tok_remaining,
-- tok_reset_us, retry_after_us}; "charge" returns nothing.

local eps = 0.001 -- absorbs floating-point rounding, as limits.epsilonMicros
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local mode = ARGV[1]
local p = tonumber(ARGV[2])
local rl = tonumber(ARGV[3])
local tl = tonumber(ARGV[4])
local rc = tonumber(ARGV[5])
local tc = tonumber(ARGV[6])

local st = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local rd = tonumber(st[1]) or 0
local td = tonumber(st[2]) or 0
local at = tonumber(st[3]) or now
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
rd = math.max(rd - elapsed, 0)
td = math.max(td - elapsed, 0)

local function store()
  if rd <= 0 and td <= 0 then
    redis.call('DEL', KEYS[1])
    return
  end
  redis.call('HSET', KEYS[1], 'r', string.format('%.17g', rd), 't', string.format('%.17g', td),
    'at', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(rd, td) / 1000) + 1)
end

if mode == 'charge' then
  if tl > 0 then
    td = math.max(td + tc * p / tl, 0)
  end
  store()
  return {}
end

-- fits returns whether cost fits now, whether it never can, and the debt after taking it.
local function fits(limit, debt, cost)
  if limit == 0 then return true, false, debt end
  if cost > limit then return false, true, debt end
  local need = debt + cost * (p / limit)
  return need <= p + eps, false, need
end

local rok, rbig, rneed = fits(rl, rd, rc)
local tok, tbig, tneed = fits(tl, td, tc)
local allowed = rok and tok
local toolarge = rbig or tbig
local retry = 0
if allowed then
  if rl > 0 then rd = rneed end
  if tl > 0 then td = tneed end
elseif not toolarge then
  if not rok then retry = math.max(retry, rneed - p) end
  if not tok then retry = math.max(retry, tneed - p) end
end
if rl == 0 then rd = 0 end
if tl == 0 then td = 0 end
store()

local function bucket(limit, debt)
  if limit == 0 then return 0, 0 end
  local remaining = math.floor((p - debt + eps) / (p / limit))
  if remaining < 0 then remaining = 0 end
  if remaining > limit then remaining = limit end
  return remaining, math.ceil(debt)
end

local rrem, rreset = bucket(rl, rd)
local trem, treset = bucket(tl, td)
return {allowed and 1 or 0, toolarge and 1 or 0, rrem, rreset, trem, treset, math.ceil(retry)}
