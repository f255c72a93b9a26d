-- POST of a fixed JSON body (BENCH_BODY) to the URL wrk is given: a function call.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY") or "{}"
