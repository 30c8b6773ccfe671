-- wrk script for the tagd benchmark suite: replays a list of request targets
-- (the path and query of SigV4 presigned S3 GET URLs) over keep-alive
-- connections, each wrk thread in its own shuffled order, round-robin.
--
--   WRK_URLS=/path/to/targets.txt wrk -t2 -c64 -d5s -s replay.lua http://127.0.0.1:PORT
--
-- targets.txt holds one "/bucket/key?X-Amz-..." per line; the Host header wrk
-- sends (host:port of the URL on the command line) must be the host the URLs
-- were presigned for.  done() prints one line "WRKJSON {...}" with the
-- summary and the latency distribution (microseconds), read by
-- bench/tagbench/loads.py.
--
-- Without WRK_URLS the script defines no request(): wrk then uses its static
-- fast path (the one URL of its command line, no Lua call per request).
-- bench/nginx_tune.py uses that to measure what replaying costs the client.

local targets_file = os.getenv("WRK_URLS")
local seed_base = tonumber(os.getenv("WRK_SEED") or "1")

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

local reqs = {}
local n = 0
local i = 0

local function load_targets()
   local list = {}
   for line in io.lines(targets_file) do
      if #line > 0 then
         list[#list + 1] = line
      end
   end
   if #list == 0 then
      error("no targets in " .. targets_file)
   end
   -- Fisher-Yates with a per-thread seed, so threads do not walk in lockstep
   math.randomseed(seed_base * 7919 + (tid or 0))
   for k = #list, 2, -1 do
      local j = math.random(k)
      list[k], list[j] = list[j], list[k]
   end
   for k = 1, #list do
      reqs[k] = wrk.format("GET", list[k])
   end
   n = #reqs
   i = 0
end

if targets_file ~= nil and targets_file ~= "" then
   function init(args)
      load_targets()
   end

   function request()
      i = i + 1
      if i > n then
         i = 1
      end
      return reqs[i]
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local out = string.format(
      '{"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.max, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9))
   io.write("WRKJSON " .. out .. "\n")
end
