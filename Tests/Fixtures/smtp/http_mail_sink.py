"""Stands in for an HTTP email API (SendGrid, Resend, Stack0, a webhook) in the magic-code
tests: listens on a free loopback port, writes that port to <dir>/port, and each POST it
gets to <dir>/NNNNNN.json as {"path", "authorization", "body"}; answers with the status
given as the second argument (default 202)."""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

folder = sys.argv[1]
status = int(sys.argv[2]) if len(sys.argv) > 2 else 202
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        count += 1
        path = os.path.join(folder, "%06d.json" % count)
        with open(path + ".tmp", "w") as f:
            json.dump({"path": self.path, "authorization": self.headers.get("Authorization"), "body": json.loads(body)}, f)
        os.rename(path + ".tmp", path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(folder, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(folder, "port.tmp"), os.path.join(folder, "port"))
server.serve_forever()
