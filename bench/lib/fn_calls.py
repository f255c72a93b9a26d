# Keep-alive POST /api/fn/getItem {"id"} calls, N in all over T connections; fails on any
# non-200. Usage: python3 fn_calls.py PORT ID N T (bench/fn_instructions.sh).
import http.client, json, sys, threading
port, ident, n, threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = json.dumps({"id": ident})
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(k):
        c.request("POST", "/api/fn/getItem", body, {"Content-Type": "application/json"})
        r = c.getresponse(); d = r.read()
        assert r.status == 200, (r.status, d)
ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
