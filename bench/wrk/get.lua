-- Get-by-id: each request GETs <prefix><id> for an id picked at random from a file of
-- ids that bench/crud.sh inserted before the run (one id a line).
-- Arguments (after "--" on the wrk command line): <ids file> <path prefix>.
-- Requests are pre-formatted in init() so the per-request cost is one table lookup.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

local reqs = {}

function init(args)
   local file, prefix = args[1], args[2]
   if file == nil or prefix == nil then
      error("usage: wrk -s get.lua URL -- <ids file> <path prefix>")
   end
   for id in io.lines(file) do
      if id ~= "" then reqs[#reqs + 1] = wrk.format("GET", prefix .. id) end
   end
   if #reqs == 0 then error("no ids in " .. file) end
   math.randomseed(os.time() + (bench_tid or 0) * 7919)
end

function request()
   return reqs[math.random(#reqs)]
end
