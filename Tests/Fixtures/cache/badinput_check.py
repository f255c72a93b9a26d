#!/usr/bin/env python3
"""Bad input at the RESP port: each offending client gets an error and is disconnected,
while a well-formed client keeps being served; then a seeded fuzz loop of random bytes.

    badinput_check.py PORT --max-bulk N --max-multibulk N [--seed S] [--fuzz N] [--others N]

--others: connections the caller itself keeps open during the run.

Expects the server to run with max_bulk_bytes=N, max_multibulk=N and a short
partial_timeout_ms. Exits non-zero with what went wrong."""
import random
import socket
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from resp_client import Conn  # noqa: E402


def raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, limit=1 << 20):
    """Everything the server sends until it closes the connection."""
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def expect_error_then_close(port, payload, expected, half_close=False, what=""):
    s = raw(port)
    s.sendall(payload)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    data = read_until_closed(s)
    assert expected in data, "%s: expected %r in %r" % (what, expected, data[:300])
    assert data.endswith(b"\r\n"), "%s: reply not complete: %r" % (what, data[-100:])
    return data


class Watcher:
    """A well-formed client that must keep working throughout."""

    def __init__(self, port):
        self.c = Conn(port)
        self.n = 0

    def check(self):
        self.n += 1
        v = "value-%d" % self.n
        assert self.c.call("SET", "watcher:key", v) == ("str", b"OK")
        assert self.c.call("GET", "watcher:key") == ("bulk", v.encode())
        assert self.c.call("PING") == ("str", b"PONG")


def main():
    a = sys.argv[1:]
    port = int(a[0])
    max_bulk = int(a[a.index("--max-bulk") + 1])
    max_mb = int(a[a.index("--max-multibulk") + 1])
    seed = int(a[a.index("--seed") + 1]) if "--seed" in a else 1
    fuzz = int(a[a.index("--fuzz") + 1]) if "--fuzz" in a else 300
    others = int(a[a.index("--others") + 1]) if "--others" in a else 0
    w = Watcher(port)
    w.check()

    cases = [
        ("malformed frame", b"*2\r\n$3\r\nGET\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'", False),
        ("bad multibulk count", b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length", False),
        ("bulk over the limit", b"*2\r\n$3\r\nSET\r\n$%d\r\n" % (max_bulk + 1), b"-ERR Protocol error: invalid bulk length", False),
        ("negative bulk", b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length", False),
        ("multibulk over the limit", b"*%d\r\n" % (max_mb + 1), b"-ERR Protocol error: invalid multibulk length", False),
        ("half-sent command, then EOF", b"*3\r\n$3\r\nSET\r\n$1\r\nk", b"-ERR Protocol error: connection closed in the middle of a command", True),
        ("pipeline then bad frame", b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n", b"+PONG\r\n+PONG\r\n-ERR Protocol error: invalid multibulk length", False),
        ("inline line too long", b"A" * (70 * 1024), b"-ERR Protocol error: too big inline request", False),
        ("unbalanced quotes", b'SET "abc\r\n', b"-ERR Protocol error: unbalanced quotes in request", False),
        ("bulk count line too long", b"*1\r\n$" + b"1" * (70 * 1024), b"-ERR Protocol error: too big bulk count string", False),
    ]
    for what, payload, expected, half in cases:
        expect_error_then_close(port, payload, expected, half, what)
        w.check()

    # A half-sent command that then stalls: the server gives up on it after its timeout.
    s = raw(port)
    s.sendall(b"*3\r\n$3\r\nSET\r\n")
    w.check()
    data = read_until_closed(s)
    assert b"-ERR Protocol error: incomplete command" in data, data
    w.check()

    # A value exactly at the limit is fine.
    big = b"x" * max_bulk
    c = Conn(port)
    assert c.call("SET", "big", big) == ("str", b"OK")
    assert c.call("STRLEN", "big") == ("int", max_bulk)
    c.call("DEL", "big")
    c.close()

    # Fuzz: random bytes (sometimes with a RESP-looking start) from many connections.
    rng = random.Random(seed)
    prefixes = [b"", b"*", b"*3\r\n", b"*2\r\n$3\r\nGET\r\n$", b"$", b"+", b"-", b":", b"*-1\r\n", b"*1\r\n$99999999999999999999\r\n"]
    for i in range(fuzz):
        payload = rng.choice(prefixes) + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2048)))
        s = raw(port)
        try:
            s.sendall(payload)
            if rng.random() < 0.5:
                s.shutdown(socket.SHUT_WR)
                s.settimeout(30)
                read_until_closed(s, limit=1 << 16)
            else:
                s.close()
        except (BrokenPipeError, ConnectionResetError):
            s.close()
        if i % 10 == 0:
            w.check()
    w.check()
    # Every fuzz connection is gone in the end.
    deadline = time.time() + 30
    while True:
        info = w.c.call("INFO", "clients")[1].decode()
        n = int(info.split("connected_clients:")[1].split("\r\n")[0])
        if n <= 1 + others:
            break
        assert time.time() < deadline, "fuzz connections still open: %d" % n
        time.sleep(0.1)
    print("bad input: %d cases, %d fuzz connections, watcher checks %d: ok" % (len(cases) + 1, fuzz, w.n))


if __name__ == "__main__":
    main()
