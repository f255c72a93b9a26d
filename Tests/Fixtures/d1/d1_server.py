#!/usr/bin/env python3
"""A local stand-in for Cloudflare D1's HTTP query API, backed by a real SQLite file.

Used by the black-box tests of Plugins/StoreD1 (Tests/PylonHostTests/Support/TestStore.swift).
It answers the shape of

    POST {base}/accounts/{account}/d1/database/{database}/query
      {"sql": "...", "params": [...]}                      one statement
      {"batch": [{"sql": "...", "params": [...]}, ...]}    statements run in one transaction
    -> {"result": [{"results": [{col: value}...], "success": true, "meta": {...}}],
        "success": true, "errors": [], "messages": []}

with D1-style errors ({"success": false, "errors": [{"code", "message"}]}, messages ending in
": SQLITE_CONSTRAINT" etc.), bearer-token auth, and 404 for an unknown account or database.
It has never been compared byte for byte with Cloudflare's service.

Test hooks (not part of D1):
    POST /__fault {"mode": M, "times": N, "on": "any"|"batch", "match"?: TEXT}
        the next N query requests (or only batch requests; with "match", only those whose
        body contains TEXT, so the host's own background reads are not hit) misbehave,
        M one of
        http_500           answer 500 with an HTML body, apply nothing
        drop_before_apply  close the connection without applying or answering
        drop_after_apply   apply, then close the connection without answering
        garbage            answer 200 with a body that is not JSON, apply nothing
        d1_error           answer 200 {"success": false, "errors": [...]}, apply nothing
    GET /__stats -> {"requests": n, "applied_batches": n}
    POST /__exit   the server exits (connections to it are refused from then on)

Usage: d1_server.py --db FILE --port-file FILE --account A --database D --token T
                    [--tls-cert PEM --tls-key PEM]
Binds 127.0.0.1 on a free port and writes the port number to --port-file; with a
certificate it serves HTTPS.
"""
import argparse
import json
import os
import re
import signal
import ssl
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class D1Error(Exception):
    def __init__(self, message, status=400, code=7500):
        super().__init__(message)
        self.status = status
        self.code = code


class Database:
    """One SQLite connection; D1 runs statements one at a time, so a lock is faithful."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.applied_batches = 0

    @staticmethod
    def bind(params):
        out = []
        for p in params or []:
            if isinstance(p, bool):
                out.append(1 if p else 0)
            elif isinstance(p, list):  # a blob as an array of bytes
                out.append(bytes(p))
            elif p is None or isinstance(p, (int, float, str)):
                out.append(p)
            else:
                raise D1Error("unsupported parameter type %s: SQLITE_MISMATCH" % type(p).__name__)
        return out

    @staticmethod
    def value(v):
        if isinstance(v, bytes):
            return list(v)
        return v

    def run_one(self, sql, params):
        started = time.monotonic()
        before = self.conn.total_changes
        try:
            cur = self.conn.execute(sql, self.bind(params))
            names = [d[0] for d in cur.description] if cur.description else []
            rows = [dict(zip(names, (self.value(v) for v in row))) for row in cur.fetchall()]
        except sqlite3.IntegrityError as e:
            raise D1Error("%s: SQLITE_CONSTRAINT" % e)
        except sqlite3.Error as e:
            raise D1Error("%s: SQLITE_ERROR" % e)
        changes = self.conn.total_changes - before
        return {
            "results": rows,
            "success": True,
            "meta": {
                "served_by": "pylon-test-d1",
                "duration": round((time.monotonic() - started) * 1000, 3),
                "changes": changes,
                "last_row_id": cur.lastrowid or 0,
                "changed_db": changes > 0,
                "rows_read": len(rows),
                "rows_written": changes,
            },
        }

    def run(self, statements, atomic):
        with self.lock:
            if not atomic:
                return [self.run_one(s["sql"], s.get("params")) for s in statements]
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = [self.run_one(s["sql"], s.get("params")) for s in statements]
                self.conn.execute("COMMIT")
                self.applied_batches += 1
                return out
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pylon-test-d1"

    def log_message(self, fmt, *args):  # quiet; the test reads the host's log instead
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, code, message):
        self.answer(status, {"result": [], "success": False, "errors": [{"code": code, "message": message}], "messages": []})

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        st = self.server.state
        if self.path == "/__stats":
            self.answer(200, {"requests": st["requests"], "applied_batches": st["db"].applied_batches})
        else:
            self.fail(404, 7404, "no route %s" % self.path)

    def do_POST(self):
        st = self.server.state
        body = self.read_body()
        if self.path == "/__exit":  # the service goes away: later requests are refused
            self.answer(200, {"ok": True})
            self.wfile.flush()
            os._exit(0)
        if self.path == "/__fault":
            spec = json.loads(body or b"{}")
            with st["fault_lock"]:
                st["fault"] = (spec.get("mode"), int(spec.get("times", 1)), spec.get("on", "any"),
                               spec.get("match", "").encode())
            self.answer(200, {"ok": True})
            return
        m = re.fullmatch(r"/client/v4/accounts/([^/]+)/d1/database/([^/]+)/query", self.path)
        if m is None:
            self.fail(404, 7404, "no route %s" % self.path)
            return
        if self.headers.get("Authorization") != "Bearer " + st["token"]:
            self.fail(403, 10000, "Authentication error")
            return
        if m.group(1) != st["account"] or m.group(2) != st["database"]:
            self.fail(404, 7404, "Could not find database %s" % m.group(2))
            return
        st["requests"] += 1
        is_batch = b'"batch"' in body[:20]
        fault = None
        with st["fault_lock"]:
            mode, times, on, match = st["fault"]
            if mode and times > 0 and (on == "any" or is_batch) and match in body:
                fault = mode
                st["fault"] = (mode, times - 1, on, match)
        if fault == "http_500":
            self.answer(500, b"<html><body>internal error</body></html>", "text/html")
            return
        if fault == "garbage":
            self.answer(200, b"\x00not json at all{", "application/json")
            return
        if fault == "d1_error":
            self.answer(200, {"result": None, "success": False, "errors": [{"code": 7500, "message": "injected failure: SQLITE_BUSY"}], "messages": []})
            return
        if fault == "drop_before_apply":
            self.close_connection = True
            self.connection.close()
            return
        try:
            req = json.loads(body)
            if isinstance(req, dict) and "batch" in req:
                statements, atomic = req["batch"], True
            elif isinstance(req, dict) and isinstance(req.get("sql"), str):
                statements, atomic = [req], False
            else:
                raise D1Error("request must be {sql, params} or {batch: [...]}", code=7400)
            if not statements or not all(isinstance(s, dict) and isinstance(s.get("sql"), str) for s in statements):
                raise D1Error("every statement needs sql", code=7400)
            result = st["db"].run(statements, atomic)
        except D1Error as e:
            self.fail(e.status, e.code, str(e))
            return
        except (ValueError, KeyError, TypeError) as e:
            self.fail(400, 7400, "bad request: %s" % e)
            return
        if fault == "drop_after_apply":
            self.close_connection = True
            self.connection.close()
            return
        self.answer(200, {"result": result, "success": True, "errors": [], "messages": []})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--account", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    # Exit on SIGTERM even if the parent started us with it ignored, and when the parent
    # (the test process) goes away without stopping us.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.getppid()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.state = {
        "db": Database(args.db), "token": args.token, "account": args.account, "database": args.database,
        "requests": 0, "fault": (None, 0, "any", b""), "fault_lock": threading.Lock(),
    }
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
