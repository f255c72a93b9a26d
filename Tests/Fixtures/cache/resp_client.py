"""A minimal RESP2/RESP3 client for the CacheRESP tests: sends commands as multibulk
and parses every reply type into plain tuples, so two servers' replies can be compared
exactly (error texts included)."""
import socket


class RespError(Exception):
    pass


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.sock.sendall(data)

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def call(self, *args):
        self.send_raw(self.encode(args))
        return self.read()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return ("str", rest)
        if t == b"-":
            return ("err", rest)
        if t == b":":
            return ("int", int(rest))
        if t == b"$":
            n = int(rest)
            return ("nil",) if n < 0 else ("bulk", self._exact(n))
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return ("nilarr",)
            kind = {b"*": "arr", b"~": "set", b">": "push"}[t]
            return (kind, [self.read() for _ in range(n)])
        if t == b"%":
            n = int(rest)
            return ("map", [(self.read(), self.read()) for _ in range(n)])
        if t == b"_":
            return ("null",)
        if t == b",":
            return ("dbl", rest)
        if t == b"#":
            return ("bool", rest == b"t")
        if t == b"=":
            return ("verb", self._exact(int(rest)))
        if t == b"(":
            return ("big", rest)
        raise RespError("unknown reply type %r in %r" % (t, line))
