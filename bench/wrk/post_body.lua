-- POST of a fixed JSON body (BENCH_BODY) to the URL wrk is given: a function call.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY") or "{}"
-- BENCH_AUTH: a bearer token (admin routes such as POST /api/jobs).
if os.getenv("BENCH_AUTH") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_AUTH") end
