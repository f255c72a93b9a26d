"""Stands in for a CAPTCHA provider's siteverify endpoint and a k-anonymity breached-password
range API (Have I Been Pwned's shape) in the auth tests. Listens on a free loopback port,
writes that port to <dir>/port, and records every request as <dir>/NNNNNN.json
{"method", "path", "body"}.

POST /siteverify (form secret, response): success only with secret "s3cret" and response
"solved" (score 0.9) or "bot-ish" (score 0.1). POST /broken: HTTP 500.
GET /range/<5 hex>: the suffixes known for that prefix, "SUFFIX:COUNT" lines, with padding
lines of count 0; "correct horse battery" is breached 42 times. GET /down/...: HTTP 503."""
import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

folder = sys.argv[1]
count = 0
breached = hashlib.sha1("correct horse battery".encode()).hexdigest().upper()


def record(method, path, body):
    global count
    count += 1
    name = os.path.join(folder, "%06d.json" % count)
    with open(name + ".tmp", "w") as f:
        json.dump({"method": method, "path": path, "body": body}, f)
    os.rename(name + ".tmp", name)


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, text, kind="application/json"):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        record("POST", self.path, body)
        if self.path != "/siteverify":
            return self.answer(500, "{}")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        ok = form.get("secret") == "s3cret" and form.get("response") in ("solved", "bot-ish")
        verdict = {"success": ok}
        if ok:
            verdict["score"] = 0.9 if form["response"] == "solved" else 0.1
        self.answer(200, json.dumps(verdict))

    def do_GET(self):
        record("GET", self.path, "")
        if not self.path.startswith("/range/"):
            return self.answer(503, "down", "text/plain")
        prefix = self.path[len("/range/"):].upper()
        lines = ["0123456789ABCDEF0123456789ABCDEF012:0", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:3"]
        if breached.startswith(prefix):
            lines.insert(1, breached[5:] + ":42")
        self.answer(200, "\r\n".join(lines), "text/plain")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(folder, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(folder, "port.tmp"), os.path.join(folder, "port"))
server.serve_forever()
