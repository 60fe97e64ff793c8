-- wrk script for scripts/bench.py: a unique JSON body per request, and a machine-readable summary.
--
-- Why unique bodies: Kailash Nexus answers repeated identical bodies from a cache without running
-- the workflow, so identical bodies would measure its cache, not its engine.
--
-- Arguments (after `--`):  [get] [start=N]
--   get      send plain GETs to the URL (e.g. /health) instead of POSTing sum inputs
--   start=N  first value of the counter (bench.py gives every run its own range, so bodies never
--            repeat across runs either: a repeat would be answered from Kailash Nexus's cache)
-- Body: {"inputs":{"a":<counter>,"b":<thread number>}}; `a` grows by one per request.

local counter = 0
local thread_number = 0
local threads = {}
local plain_get = false
local post_headers = { ["Content-Type"] = "application/json" }

function setup(thread)
   thread:set("thread_number", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   thread_number = tonumber(wrk.thread:get("thread_number")) or 1
   for _, arg in ipairs(args) do
      if arg == "get" then
         plain_get = true
      elseif arg:sub(1, 6) == "start=" then
         counter = (tonumber(arg:sub(7)) or 1) - 1
      end
   end
end

function request()
   if plain_get then
      return wrk.format("GET", nil, nil, nil)
   end
   counter = counter + 1
   local body = string.format('{"inputs":{"a":%d,"b":%d}}', counter, thread_number)
   return wrk.format("POST", nil, post_headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
