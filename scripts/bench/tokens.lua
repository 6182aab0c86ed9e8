-- wrk script: GET `path` with an x-token taken in turn from a file of tokens.
--   wrk -s tokens.lua URL -- PATH TOKENS_FILE
local tokens = {}
local path = "/"
local i = 0

function init(args)
  path = args[1] or "/"
  if args[2] and #args[2] > 0 then
    for line in io.lines(args[2]) do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
  end
  i = math.random(math.max(#tokens, 1)) - 1
end

function request()
  if #tokens == 0 then
    return wrk.format("GET", path)
  end
  i = i % #tokens + 1
  return wrk.format("GET", path, { ["x-token"] = tokens[i] })
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, bad))
end
