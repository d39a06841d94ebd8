-- wrk script of benchmarks/serving_bench.py: POST /v1/predict with real posts, rotating through them.
--
--   LRSA_WRK_BODIES=posts.jsonl LRSA_WRK_OUT=result.json wrk -t1 -c16 -d60s -s benchmarks/wrk_predict.lua URL
--
-- LRSA_WRK_BODIES: one JSON request body per line (a Twitter-2015 test post with its captions as
-- image_text); each wrk thread starts at its own offset and sends the bodies in turn. At the end the
-- summary (requests, errors by kind, latency percentiles in microseconds) is written as JSON to
-- LRSA_WRK_OUT. Responses are not parsed, so the client stays cheap; wrk counts non-2xx/3xx answers in
-- errors.status.

local bodies = {}
for line in io.lines(os.getenv("LRSA_WRK_BODIES")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 97)
  threads = threads + 1
end

function init(args)
  n = offset or 0
end

function request()
  n = n + 1
  return wrk.format("POST", "/v1/predict", headers, bodies[(n % #bodies) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("LRSA_WRK_OUT"), "w"))
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "bodies": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
    '"p50": %d, "p90": %d, "p95": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes, #bodies,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99)))
  f:close()
end
