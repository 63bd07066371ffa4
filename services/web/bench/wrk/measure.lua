-- wrk script of bench/load.py: one page (GET) or one form (POST), checked and summarised.
--
--   wrk ... -s bench/wrk/measure.lua URL -- EXPECTED_STATUS [FORM_BODY]
--
-- EXPECTED_STATUS: the status every answer must have (200 for a page, 302 for a saved form:
-- a redirect to the log-in page would otherwise pass for a fast page). FORM_BODY, when
-- given, is sent url-encoded as a POST (the session's CSRF token inside). The session
-- cookie and User-Agent come with wrk's -H options.
--
-- done() prints one line, "BENCH {json}": requests, seconds, req/s, p50/p95/p99 latency in
-- ms (wrk's own histogram) and how many answers had another status or failed.

local threads = {}
local expected = 200
local body = nil

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = tonumber(args[1] or "200")
  body = args[2]
  unexpected = 0
  if body then
    wrk.method = "POST"
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end

function response(status, headers, response_body)
  if status ~= expected then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local wrong = 0
  for _, thread in ipairs(threads) do
    wrong = wrong + thread:get("unexpected")
  end
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.3f, "rps": %.2f, "p50": %.2f, "p95": %.2f, "p99": %.2f, ' ..
    '"max": %.2f, "unexpected": %d, "failed": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, wrong, failed))
end
