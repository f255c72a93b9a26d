-- Single-row insert: POST of one two-field JSON object to the URL wrk is given
-- (pylon: /api/entities/Item, PocketBase: /api/collections/items/records).
-- The request is built once, so wrk spends no Lua time per request on it.
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench item","done":false}'
