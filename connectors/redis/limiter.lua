-- HXP rate limiter: two GCRA token buckets (requests, tokens) per key, in microseconds.
-- Mirrors limits.DecideLease and limits' adjust (ChargeState, RefundState) in Go; keep them
-- in step.
--
-- KEYS[1]  the bucket hash: r = request debt, t = token debt (both in µs), at = last update
-- ARGV[1]  "lease" or "adjust"
-- ARGV[2]  period in µs
-- ARGV[3]  request limit (0 = unlimited)
-- ARGV[4]  token limit (0 = unlimited)
-- ARGV[5]  request cost ("adjust": requests to add, negative to give back)
-- ARGV[6]  token cost ("adjust": tokens to add, negative to give back)
-- ARGV[7]  "lease": requests of one leased unit
-- ARGV[8]  "lease": tokens of one leased unit
-- ARGV[9]  "lease": the most units to lease (0: a plain Allow)
-- ARGV[10] "lease": the share (0..1) of what remains that the units may take
--
-- "lease" returns {allowed, too_large, req_remaining, req_reset_us, tok_remaining,
-- tok_reset_us, retry_after_us, units_leased}; "adjust" returns nothing.

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

if mode == 'adjust' then
  if rl > 0 then rd = math.max(rd + rc * p / rl, 0) end
  if tl > 0 then td = math.max(td + tc * p / tl, 0) end
  store()
  return {}
end

-- take returns debt after taking units more (limits' dimension.take).
local function take(limit, debt, units)
  if limit == 0 then return 0 end
  return debt + units * (p / limit)
end

-- fits returns whether cost fits now, whether it never can, and the debt after taking it.
local function fits(limit, debt, cost)
  if limit == 0 then return true, false, debt end
  if cost > limit then return false, true, debt end
  local need = take(limit, debt, cost)
  return need <= p + eps, false, need
end

-- remaining returns what could still be taken at debt (limits' dimension.bucket).
local function remaining(limit, debt)
  local rem = math.floor((p - debt + eps) / (p / limit))
  if rem < 0 then rem = 0 end
  if rem > limit then rem = limit end
  return rem
end

-- fitting returns how many units of size unit fit in share of what remains at debt, or nil
-- for no bound (limits' dimension.fitting).
local function fitting(limit, debt, unit, share)
  if limit == 0 or unit <= 0 then return nil end
  return math.floor(math.floor(remaining(limit, debt) * share) / unit)
end

local rok, rbig, rneed = fits(rl, rd, rc)
local tok, tbig, tneed = fits(tl, td, tc)
local allowed = rok and tok
local toolarge = rbig or tbig
local retry = 0
local leased = 0
if allowed then
  if rl > 0 then rd = rneed end
  if tl > 0 then td = tneed end
  local ur, ut = tonumber(ARGV[7]), tonumber(ARGV[8])
  local share = tonumber(ARGV[10])
  leased = tonumber(ARGV[9])
  for _, n in ipairs({fitting(rl, rd, ur, share) or leased, fitting(tl, td, ut, share) or leased}) do
    if n < leased then leased = n end
  end
  if leased > 0 then
    rd = take(rl, rd, leased * ur)
    td = take(tl, td, leased * ut)
  end
elseif not toolarge then
  if not rok then retry = math.max(retry, rneed - p) end
  if not tok then retry = math.max(retry, tneed - p) end
end
if rl == 0 then rd = 0 end
if tl == 0 then td = 0 end
store()

local function bucket(limit, debt)
  if limit == 0 then return 0, 0 end
  return remaining(limit, debt), math.ceil(debt)
end

local rrem, rreset = bucket(rl, rd)
local trem, treset = bucket(tl, td)
return {allowed and 1 or 0, toolarge and 1 or 0, rrem, rreset, trem, treset, math.ceil(retry), leased}
