-- Shared by every bench/wrk script (loaded with dofile at the top of each).
--
-- wrk runs one Lua state per thread plus one for setup/done. response() runs in the
-- thread states and counts every status outside 200-299 there; done() runs in the main
-- state and adds the per-thread counts up through thread:get(). wrk's own summary only
-- counts >= 400 as errors, and we want a 3xx to be flagged too.
--
-- done() prints one line, "BENCH_RESULT k=v ...", that bench/crud.sh parses, and for a
-- run with non-2xx answers one "BENCH_BAD_SAMPLE <status> <body prefix>" line so the
-- first bad answer can be read without re-running.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("bench_tid", #threads)
end

non2xx = 0
bad_sample = ""

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if bad_sample == "" then
         bad_sample = tostring(status) .. " " .. string.sub(body or "", 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local bad, sample = 0, ""
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      local s = t:get("bad_sample")
      if sample == "" and s ~= nil and s ~= "" then sample = s end
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "BENCH_RESULT requests=%d seconds=%.3f rps=%.1f ok=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f\n",
      summary.requests, seconds, summary.requests / seconds, summary.requests - bad, bad,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
   if sample ~= "" then
      local flat = string.gsub(sample, "[\r\n]+", " ")
      io.write("BENCH_BAD_SAMPLE " .. flat .. "\n")
   end
end
