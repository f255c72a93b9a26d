-- List-of-50: a plain GET of the URL wrk is given, which carries the page size in its
-- query (pylon: /api/entities/Item?limit=50,
-- PocketBase: /api/collections/items/records?perPage=50&skipTotal=1).
dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")
