#!/usr/bin/env python3
"""Shard subscribers for bench/shards.sh: SHARDS x SUBS SSE streams of
/api/shards/<id>/connect (admin token, sid s<n>), read for DURATION seconds.

For each frame (an `id: <tick>` line) it records when it arrived. A shard ticks on a fixed
schedule (tick n is due at base + n * interval); base is estimated per shard as the
earliest (arrival - n * interval) seen, so a frame's lateness is how far behind that ideal
schedule it reached the client: tick-start jitter plus delivery, as one number. Prints one
JSON object: frames received and expected, lateness percentiles (ms), dropped-or-missed
frames, and connections that failed.
"""
import asyncio, json, sys, time

def main():
    port, token, shards, subs, hz, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    interval = 1.0 / hz
    arrivals = {}  # shard -> list of (tick, arrival)
    failed = [0]
    stop_at = [0.0]

    async def reader(shard, sid):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", int(port), limit=1 << 20)
            w.write(f"GET /api/shards/{shard}/connect?sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                failed[0] += 1
                return
            mine = arrivals.setdefault(shard, [])
            buf = b""
            while time.monotonic() < stop_at[0]:
                chunk = await r.read(1 << 16)
                if not chunk:
                    break
                now = time.monotonic()
                buf += chunk
                # Only the `id:` lines matter; keep the tail that may hold a partial line.
                start = 0
                while True:
                    i = buf.find(b"\nid: ", start)
                    if i < 0:
                        break
                    j = buf.find(b"\n", i + 5)
                    if j < 0:
                        break
                    mine.append((int(buf[i + 5:j]), now))
                    start = j
                buf = buf[start:][-64:]
            w.close()
        except Exception:
            failed[0] += 1

    async def run():
        stop_at[0] = time.monotonic() + duration + 600
        tasks = [asyncio.create_task(reader(f"b{s}", f"s{n}")) for s in range(shards) for n in range(subs)]
        await asyncio.sleep(2)  # connected
        t0 = time.monotonic()
        for v in arrivals.values():
            v.clear()
        stop_at[0] = t0 + duration
        await asyncio.sleep(duration + 1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return t0

    asyncio.run(run())
    late = []
    frames = 0
    for shard, v in arrivals.items():
        if not v:
            continue
        base = min(a - t * interval for t, a in v)
        late.extend((a - (base + t * interval)) * 1000 for t, a in v)
        frames += len(v)
    late.sort()
    pct = lambda p: round(late[min(len(late) - 1, int(len(late) * p))], 2) if late else None
    expected = int(shards * subs * hz * duration)
    print(json.dumps({"frames": frames, "expected": expected, "delivered_pct": round(100.0 * frames / max(1, expected), 2),
                      "late_ms_p50": pct(0.5), "late_ms_p99": pct(0.99), "late_ms_p999": pct(0.999), "late_ms_max": late[-1] if late else None,
                      "within_5ms_pct": round(100.0 * sum(1 for x in late if x <= 5) / max(1, len(late)), 2),
                      "within_10ms_pct": round(100.0 * sum(1 for x in late if x <= 10) / max(1, len(late)), 2),
                      "failed_connections": failed[0]}))

main()
