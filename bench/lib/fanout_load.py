#!/usr/bin/env python3
"""Load generator for bench/fanout.sh: realtime fan-out latency of pylon-host (WebSocket)
and PocketBase (SSE realtime) with an owner-based read rule.

  setup-pylon BASE ADMIN_TOKEN USERS OUT_JSON
      mints USERS sessions (POST /api/auth/session as admin, user ids u0..u<USERS-1>)
  setup-pb BASE SU_EMAIL SU_PASSWORD USERS OUT_JSON
      creates the `msgs` collection (ownerId/body/sentAt, list/view rule
      `ownerId = @request.auth.id`, create superuser-only) and USERS auth records, signs
      each in; OUT_JSON also holds the superuser token for the writer
  run --server pylon|pocketbase --base URL --users JSON --n N --rate R --duration S
      --workers W --drain S --server-pid PID --out JSON [--seed K] [--inflight M]
      [--admin-token T]   (pylon: for the writer and /metrics)
      [--bases URL,URL...] [--server-pids PID,PID...] [--write-to first|alternate]
      [--db-pid PID]      (several hosts: see below)
  report OUT_MD RESULT_JSON...
  report-crosshost OUT_MD HEADER_MD RESULT_JSON...

`run`: W subscriber processes (fork) each hold a share of the N subscribers; subscriber i
is user i % USERS. This (main) process is the writer: it inserts rows
{"ownerId","body":"#<i> ...","sentAt":<epoch ms>} on an open-loop schedule of R rows/s for
S s (each row's owner drawn at random with a fixed seed, so both servers get the same
sequence), then waits up to --drain s for the last deliveries. Every subscriber stamps
each event when its bytes reach the process (time.time(), the same clock the writer
stamps sentAt with) and keeps (write index, latency). The main process then checks that
every subscriber got exactly the acknowledged rows of its user: no missing row, no
duplicate, no row of another user. A thread samples the server's VmRSS every 50 ms, and
the CPU time of the server and of every load-generator process is read from /proc.

Both clients are asyncio Protocols (no task per message): the WebSocket one drives the
`websockets` package's Sans-I/O ClientProtocol, the SSE one parses HTTP/1.1 chunked
event streams itself. The writer and PocketBase's subscription POSTs use aiohttp.

Several hosts (bench/crosshost.sh): --bases lists every host's base URL (the first is
--base); subscriber i connects to host (i // USERS) % H, so each user's subscribers are
spread over every host. The writer sends row i to the first host (--write-to first) or to
host i % H (alternate). Each delivery is classed same-host (the subscriber is on the host
that took the write) or cross-host, with a latency distribution for each. Pylon events
carry `seq`: every subscriber must see strictly increasing seqs, and every subscriber
must see the same seq for a given row. --server-pids are all the hosts' pids (CPU and
liveness; RSS is sampled on the first), --db-pid the database server's postmaster (CPU of
it and all its children, kept apart from "other processes").
"""

import array
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
import urllib.parse

try:  # needed by `run` for pylon only; fanout.sh installs it
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri
except ImportError:  # pragma: no cover
    ClientProtocol = None

try:
    import orjson

    jloads = orjson.loads
    jdumps = orjson.dumps
except ImportError:  # pragma: no cover - orjson is optional
    jloads = json.loads

    def jdumps(v):
        return json.dumps(v, separators=(",", ":")).encode()


def die(msg):
    sys.stderr.write("fanout_load: " + msg + "\n")
    sys.exit(1)


def use_uvloop():
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop " + uvloop.__version__
    except ImportError:
        return "asyncio"


# ---------------------------------------------------------------- small sync HTTP (setup)
def http_json(base, method, path, body=None, headers=None, want=(200, 201, 204)):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    raw = None if body is None else json.dumps(body)
    conn.request(method, path, body=raw, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status not in want:
        die("%s %s %s-> HTTP %d %r" % (method, path, (raw[:300] + " ") if raw else "", r.status, data[:600]))
    return json.loads(data) if data else None


def setup_pylon(base, admin_token, users, out):
    res = []
    for k in range(int(users)):
        uid = "u%d" % k
        r = http_json(base, "POST", "/api/auth/session", {"user_id": uid},
                      {"Authorization": "Bearer " + admin_token})
        tok = r.get("token") if isinstance(r, dict) else None
        if not tok:
            die("POST /api/auth/session {user_id:%s} gave no token: %r" % (uid, r))
        res.append({"owner": uid, "token": tok})
    with open(out, "w") as f:
        json.dump({"users": res}, f)


def setup_pb(base, email, password, users, out):
    su = http_json(base, "POST", "/api/collections/_superusers/auth-with-password",
                   {"identity": email, "password": password})["token"]
    auth = {"Authorization": su}
    rule = "ownerId = @request.auth.id"
    http_json(base, "POST", "/api/collections", {
        "name": "msgs", "type": "base",
        "listRule": rule, "viewRule": rule,
        "createRule": None, "updateRule": None, "deleteRule": None,  # null = superusers only
        "fields": [{"name": "ownerId", "type": "text"}, {"name": "body", "type": "text"},
                   {"name": "sentAt", "type": "number"}],
    }, auth)
    res = []
    pw = "bench-pass-12345"
    for k in range(int(users)):
        em = "u%d@bench.local" % k
        http_json(base, "POST", "/api/collections/users/records",
                  {"email": em, "password": pw, "passwordConfirm": pw}, auth)
        r = http_json(base, "POST", "/api/collections/users/auth-with-password",
                      {"identity": em, "password": pw})
        res.append({"owner": r["record"]["id"], "token": r["token"]})
    with open(out, "w") as f:
        json.dump({"users": res, "writer_token": su}, f)


# ---------------------------------------------------------------- /proc
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return None


def tree_cpu_seconds(pid):
    """CPU time of pid, of its children that have ended (cutime/cstime) and of its live
    children: the whole of a PostgreSQL server when pid is its postmaster."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = sum(int(x) for x in fields[11:15])
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    for k in kids:
        c = cpu_seconds(k)
        if c is not None:
            total += c * CLK_TCK
    return total / CLK_TCK


def thread_cpu(pid):
    """{tid: (name, cpu seconds)} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def machine_busy_seconds():
    """CPU time all processes spent busy so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RSSSampler(threading.Thread):
    def __init__(self, pid, every=0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.phase = "idle"
        self.peak = {}
        self.last = None
        self.stop = False

    def sample(self):
        v = rss_kb(self.pid)
        if v is not None:
            self.last = v
            self.peak[self.phase] = max(self.peak.get(self.phase, 0), v)
        return v

    def run(self):
        while not self.stop:
            self.sample()
            time.sleep(self.every)


# ---------------------------------------------------------------- subscribers
class SubState:
    __slots__ = ("gidx", "owner_idx", "owner", "host", "got", "lat", "seq", "foreign", "other", "closed",
                 "parse_err")

    def __init__(self, gidx, owner_idx, owner, host=0):
        self.gidx, self.owner_idx, self.owner, self.host = gidx, owner_idx, owner, host
        self.got = array.array("i")      # write index of each delivered row event
        self.lat = array.array("d")      # its latency, ms
        self.seq = array.array("q")      # its change-log seq (pylon; -1 when absent)
        self.foreign = array.array("i")  # write indices of rows owned by another user
        self.other = 0                   # frames that are not row events (presence, ...)
        self.closed = None               # why the connection ended early, if it did
        self.parse_err = None


class Worker:
    def __init__(self, counter):
        self.counter = counter
        self.measuring = True
        self.stopping = False

    def on_row(self, st, owner, body, sent_at, now, seq=-1):
        try:
            i = int(body[1:body.index(" ")])
        except (ValueError, TypeError, AttributeError):
            st.parse_err = st.parse_err or ("unparsable body %r" % (body,))
            return
        if owner != st.owner:
            st.foreign.append(i)
        st.got.append(i)
        st.lat.append(now - sent_at)
        st.seq.append(seq if isinstance(seq, int) else -1)


class WSSub(asyncio.Protocol):
    """One pylon WebSocket subscriber over websockets' Sans-I/O ClientProtocol."""

    def __init__(self, worker, st, token, uri):
        self.w, self.st, self.token = worker, st, token
        self.proto = ClientProtocol(uri, max_size=None)
        self.ready = asyncio.get_running_loop().create_future()
        self.transport = None
        self.frag = None

    def connection_made(self, transport):
        self.transport = transport
        req = self.proto.connect()
        req.headers["Authorization"] = "Bearer " + self.token
        self.proto.send_request(req)
        self.flush()

    def flush(self):
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def data_received(self, data):
        now = time.time() * 1000.0
        self.proto.receive_data(data)
        n = 0
        for ev in self.proto.events_received():
            if isinstance(ev, Frame):
                if ev.opcode is Opcode.TEXT or ev.opcode is Opcode.CONT:
                    if ev.opcode is Opcode.TEXT and ev.fin:
                        payload = ev.data
                    else:
                        self.frag = (self.frag or b"") + ev.data
                        if not ev.fin:
                            continue
                        payload, self.frag = self.frag, None
                    n += self.on_text(payload, now)
                elif ev.opcode is Opcode.CLOSE:
                    self.note_close("close frame %s %r" % (self.proto.close_code, self.proto.close_reason))
            elif isinstance(ev, Response):
                if self.proto.handshake_exc is not None:
                    if not self.ready.done():
                        self.ready.set_exception(RuntimeError("handshake: %r (HTTP %d %r)" % (
                            self.proto.handshake_exc, ev.status_code, bytes(ev.body or b"")[:200])))
                elif not self.ready.done():
                    self.ready.set_result(True)
        if n:
            self.w.counter.value += n
        self.flush()

    def on_text(self, payload, now):
        st = self.st
        if not self.w.measuring:
            return 0
        try:
            ev = jloads(payload)
            data = ev.get("data") if ev.get("entity") == "Msg" else None
        except Exception:
            st.parse_err = st.parse_err or ("bad frame %r" % payload[:200])
            return 0
        if data is None:
            st.other += 1
            if st.other <= 3 and ev.get("code"):  # an error body, e.g. RESYNC_REQUIRED
                self.note_close("error frame %r" % payload[:300])
            return 0
        self.w.on_row(st, data.get("ownerId"), data.get("body"), data.get("sentAt"), now, ev.get("seq"))
        return 1

    def note_close(self, why):
        if not self.w.stopping and self.st.closed is None:
            self.st.closed = why

    def eof_received(self):
        self.proto.receive_eof()
        self.flush()
        return False

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("connection lost during handshake: %r" % (exc,)))
        self.note_close("connection lost (%r)" % (exc,))


class SSESub(asyncio.Protocol):
    """One PocketBase realtime subscriber: GET /api/realtime, HTTP/1.1 chunked or not."""

    def __init__(self, worker, st, host, port):
        self.w, self.st = worker, st
        self.req = ("GET /api/realtime HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\n\r\n" % (host, port)).encode()
        self.client_id = asyncio.get_running_loop().create_future()
        self.head = bytearray()
        self.in_body = False
        self.chunked = False
        self.raw = bytearray()
        self.need = 0      # data bytes left in the current chunk
        self.skip = 0      # CRLF bytes to skip after a chunk
        self.sse = bytearray()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.req)

    def data_received(self, data):
        now = time.time() * 1000.0
        if not self.in_body:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = bytes(self.head[:i]).decode("latin-1"), bytes(self.head[i + 4:])
            self.head = bytearray()
            lines = head.split("\r\n")
            if not lines[0].startswith("HTTP/1.1 200"):
                self.fail("GET /api/realtime -> %s" % lines[0])
                return
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                    self.chunked = True
            self.in_body = True
        if self.chunked:
            self.raw += data
            raw = self.raw
            while raw:
                if self.skip:
                    k = min(self.skip, len(raw))
                    del raw[:k]
                    self.skip -= k
                    continue
                if self.need == 0:
                    j = raw.find(b"\r\n")
                    if j < 0:
                        break
                    size = int(bytes(raw[:j]).split(b";")[0], 16)
                    del raw[:j + 2]
                    if size == 0:
                        self.st_close("stream ended (last chunk)")
                        break
                    self.need = size
                    continue
                k = min(self.need, len(raw))
                self.sse += raw[:k]
                del raw[:k]
                self.need -= k
                if self.need == 0:
                    self.skip = 2
        else:
            self.sse += data
        n = 0
        buf = self.sse
        while True:
            j = buf.find(b"\n\n")
            if j < 0:
                break
            block = bytes(buf[:j])
            del buf[:j + 2]
            n += self.on_block(block, now)
        if n:
            self.w.counter.value += n

    def on_block(self, block, now):
        name = None
        data = []
        for ln in block.split(b"\n"):
            if ln.startswith(b"event:"):
                name = ln[6:].strip()
            elif ln.startswith(b"data:"):
                data.append(ln[5:].lstrip(b" "))
        st = self.st
        if name == b"PB_CONNECT":
            if not self.client_id.done():
                self.client_id.set_result(jloads(b"\n".join(data))["clientId"])
            return 0
        if name != b"msgs" or not self.w.measuring:
            if name is not None:
                st.other += 1
            return 0
        try:
            ev = jloads(b"\n".join(data))
            rec = ev["record"]
        except Exception:
            st.parse_err = st.parse_err or ("bad event %r" % block[:200])
            return 0
        if ev.get("action") != "create":
            st.other += 1
            return 0
        self.w.on_row(st, rec.get("ownerId"), rec.get("body"), rec.get("sentAt"), now)
        return 1

    def fail(self, why):
        if not self.client_id.done():
            self.client_id.set_exception(RuntimeError(why))
        self.st_close(why)
        self.transport.close()

    def st_close(self, why):
        if not self.w.stopping and self.st.closed is None:
            self.st.closed = why

    def connection_lost(self, exc):
        if not self.client_id.done():
            self.client_id.set_exception(RuntimeError("connection lost before PB_CONNECT: %r" % (exc,)))
        self.st_close("connection lost (%r)" % (exc,))


def worker_main(cfg, subs, conn, counter):
    use_uvloop()
    try:
        asyncio.run(worker_async(cfg, subs, conn, counter))
    except Exception as e:  # report instead of hanging the main process
        try:
            conn.send({"fatal": repr(e)})
        except Exception:
            pass
        raise


async def worker_async(cfg, subs, conn, counter):
    loop = asyncio.get_running_loop()
    w = Worker(counter)
    hostports = [(u.hostname, u.port) for u in map(urllib.parse.urlsplit, cfg["bases"])]
    states, transports, failed = [], [], []
    sem = asyncio.Semaphore(cfg.get("connect_concurrency", 200))
    session = None
    if cfg["server"] == "pocketbase":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

    async def open_one(gidx, owner_idx, owner, token, h=0):
        st = SubState(gidx, owner_idx, owner, h)
        host, port = hostports[h]
        async with sem:
            try:
                if cfg["server"] == "pylon":
                    uri = parse_uri("ws://%s:%d/api/sync/ws" % (host, port))
                    # One loopback source address holds ~28,000 ephemeral ports toward one
                    # server port: beyond that, connections come from 127.0.0.2, .3, ...
                    src = ("127.0.0.%d" % (1 + gidx // 25000), 0) if host == "127.0.0.1" else None
                    tr, pr = await loop.create_connection(lambda: WSSub(w, st, token, uri), host, port, local_addr=src)
                    transports.append(tr)
                    await asyncio.wait_for(pr.ready, 60)
                else:
                    tr, pr = await loop.create_connection(lambda: SSESub(w, st, host, port), host, port)
                    transports.append(tr)
                    cid = await asyncio.wait_for(pr.client_id, 60)
                    async with session.post(cfg["base"] + "/api/realtime",
                                            data=jdumps({"clientId": cid, "subscriptions": ["msgs"]}),
                                            headers={"Authorization": token,
                                                     "Content-Type": "application/json"}) as r:
                        body = await r.read()
                        if r.status != 204:
                            raise RuntimeError("POST /api/realtime -> HTTP %d %r" % (r.status, body[:300]))
            except Exception as e:
                failed.append((gidx, repr(e)))
                st.closed = st.closed or ("connect failed: %r" % (e,))
        states.append(st)

    t0 = time.time()
    await asyncio.gather(*(open_one(*s) for s in subs))
    if session is not None:
        await session.close()
    ready_by_host = [0] * len(hostports)
    for st in states:
        if st.closed is None:
            ready_by_host[st.host] += 1
    conn.send({"ready": len(subs) - len(failed), "failed": failed[:20], "n_failed": len(failed),
               "connect_s": time.time() - t0, "ready_by_host": ready_by_host})

    # Blocking pipe reads run in a thread: the pipe's fd must stay blocking.
    await loop.run_in_executor(None, conn.recv)  # "stop"
    w.measuring = False
    w.stopping = True
    conn.send({"subs": [{"gidx": s.gidx, "owner_idx": s.owner_idx, "host": s.host, "got": s.got.tobytes(),
                         "lat": s.lat.tobytes(), "seq": s.seq.tobytes(), "foreign": s.foreign.tobytes(),
                         "other": s.other,
                         "closed": s.closed, "parse_err": s.parse_err} for s in states]})
    await loop.run_in_executor(None, conn.recv)  # "exit": close every socket at once
    for tr in transports:
        tr.abort()


# ---------------------------------------------------------------- run (main process = writer)
def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))  # nearest rank
    return sorted_vals[k]


async def metrics_gauge(session, base, admin, key):
    async with session.get(base + "/metrics", headers={"Authorization": "Bearer " + admin}) as r:
        if r.status != 200:
            return None, "HTTP %d" % r.status
        m = await r.json(content_type=None)
        return m, None


async def writer(cfg, users, session, stamp, drain):
    """Open-loop writer: row i is due at t0 + i/rate for `duration` s. At most `inflight`
    inserts are outstanding: a row due while that many are still unanswered is skipped
    (the server is not keeping up), so the schedule never slips. Inserts still unanswered
    `drain` s after the schedule ends are abandoned."""
    loop = asyncio.get_running_loop()
    rate, total = cfg["rate"], int(round(cfg["rate"] * cfg["duration"]))
    rng = random.Random(cfg["seed"])
    owners = [rng.randrange(len(users)) for _ in range(total)]
    sem = asyncio.Semaphore(cfg["inflight"])
    if cfg["server"] == "pylon":
        path = "/api/entities/Msg"
        hdr = {"Authorization": "Bearer " + cfg["admin_token"], "Content-Type": "application/json"}
    else:
        path = "/api/collections/msgs/records"
        hdr = {"Authorization": cfg["writer_token"], "Content-Type": "application/json"}
    urls = [b + path for b in cfg["bases"]]
    nh = len(urls) if cfg.get("write_to") == "alternate" else 1
    stamp["write_host"] = [i % nh for i in range(total)]
    # writes[i] = (owner_idx, status, http ms, send lag ms); status -1 skipped, 0 failed/unanswered
    writes = [None] * total
    errors = []
    inflight = [0, 0]  # now, max

    async def one(i, lag):
        sent = time.time() * 1000.0
        try:
            body = jdumps({"ownerId": users[owners[i]]["owner"],
                           "body": "#%d fan-out benchmark row" % i, "sentAt": sent})
            async with session.post(urls[i % nh], data=body, headers=hdr) as r:
                data = await r.read()
                st = r.status
            writes[i] = (owners[i], st, time.time() * 1000.0 - sent, lag)
            if not 200 <= st < 300 and len(errors) < 5:
                errors.append("row %d: HTTP %d %r" % (i, st, data[:300]))
        except asyncio.CancelledError:
            writes[i] = (owners[i], 0, None, lag)
            raise
        except Exception as e:
            writes[i] = (owners[i], 0, None, lag)
            if len(errors) < 5:
                errors.append("row %d: %r" % (i, e))
        finally:
            inflight[0] -= 1
            sem.release()

    tasks = []
    skipped = 0
    t0 = loop.time() + 0.05
    stamp["write_start"] = time.time() + 0.05
    for i in range(total):
        due = t0 + i / rate
        d = due - loop.time()
        if d > 0:
            await asyncio.sleep(d)
        lag = (loop.time() - due) * 1000.0
        if sem.locked():
            skipped += 1
            writes[i] = (owners[i], -1, None, lag)
            continue
        await sem.acquire()
        inflight[0] += 1
        inflight[1] = max(inflight[1], inflight[0])
        tasks.append(asyncio.ensure_future(one(i, lag)))
    stamp["schedule_end"] = time.time()
    unanswered = 0
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=drain)
        unanswered = len(pending)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
    stamp["write_end"] = time.time()
    return writes, errors, inflight[1], skipped, unanswered


def run(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="fanout_load.py run")
    ap.add_argument("--server", choices=["pylon", "pocketbase"], required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--drain", type=float, default=30)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inflight", type=int, default=256)
    ap.add_argument("--admin-token", default="")
    ap.add_argument("--teardown-wait", type=float, default=30)
    ap.add_argument("--bases", default="", help="every host's base URL, comma-separated (default: --base)")
    ap.add_argument("--server-pids", default="", help="every host's pid, comma-separated (default: --server-pid)")
    ap.add_argument("--write-to", choices=["first", "alternate"], default="first")
    ap.add_argument("--db-pid", type=int, default=0, help="database server (postmaster) pid")
    ap.add_argument("--label", default="", help="free text kept in the result (crosshost: the poll interval)")
    a = ap.parse_args(argv)

    ud = json.load(open(a.users))
    users = ud["users"]
    bases = [b.rstrip("/") for b in (a.bases.split(",") if a.bases else [a.base])]
    a.server_pids = [int(p) for p in a.server_pids.split(",")] if a.server_pids else [a.server_pid]
    if len(bases) > 1 and a.server != "pylon":
        die("--bases with more than one host is for pylon only")
    cfg = {"server": a.server, "base": bases[0], "bases": bases, "rate": a.rate, "duration": a.duration,
           "seed": a.seed, "inflight": a.inflight, "admin_token": a.admin_token,
           "writer_token": ud.get("writer_token", ""), "write_to": a.write_to}
    W = max(1, min(a.workers, a.n))
    # subscriber i -> user i % U and host (i // U) % H; worker w holds subscribers i with i % W == w
    shares = [[] for _ in range(W)]
    for i in range(a.n):
        k = i % len(users)
        shares[i % W].append((i, k, users[k]["owner"], users[k]["token"], (i // len(users)) % len(bases)))
    subs_per_user = [0] * len(users)
    for i in range(a.n):
        subs_per_user[i % len(users)] += 1

    sampler = RSSSampler(a.server_pid)
    sampler.sample()
    rss_idle = sampler.last
    sampler.start()

    ctx = mp.get_context("fork")
    procs, pipes, counters = [], [], []
    sampler.phase = "connect"
    for w in range(W):
        parent, child = ctx.Pipe()
        c = ctx.RawValue("q", 0)
        p = ctx.Process(target=worker_main, args=(cfg, shares[w], child, c), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
        counters.append(c)
    loop_kind = use_uvloop()
    res = asyncio.run(run_async(a, cfg, users, subs_per_user, procs, pipes, counters, sampler))
    sampler.stop = True
    res.update({"rss_idle_kb": rss_idle, "rss_peak_kb_by_phase": sampler.peak, "loop": loop_kind,
                "workers": W})
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


async def run_async(a, cfg, users, subs_per_user, procs, pipes, counters, sampler):
    import aiohttp

    loop = asyncio.get_running_loop()
    res = {"server": a.server, "n": a.n, "users": len(users), "rate": a.rate, "duration": a.duration,
           "drain_limit": a.drain, "invalid": [], "label": a.label}
    t0 = time.time()
    ready = await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in pipes))
    for r in ready:
        if "fatal" in r:
            die("a subscriber process failed: %s" % r["fatal"])
    res["connected"] = sum(r["ready"] for r in ready)
    res["connected_by_host"] = [sum(r["ready_by_host"][h] for r in ready) for h in range(len(cfg["bases"]))]
    res["connect_failed"] = sum(r["n_failed"] for r in ready)
    res["connect_fail_samples"] = [f for r in ready for f in r["failed"]][:10]
    res["connect_s"] = time.time() - t0
    if res["connect_failed"]:
        res["invalid"].append("%d of %d subscribers failed to connect, e.g. %s" % (
            res["connect_failed"], a.n, res["connect_fail_samples"][:3]))

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a.inflight))
    if a.server == "pylon":
        # The handshake completes before the host registers the subscriber: wait until its
        # gauge shows every connection, so no subscriber misses the first rows.
        res["host_connections_held_by_host"] = []
        for h, base in enumerate(cfg["bases"]):
            deadline = time.time() + 60
            while True:
                m, err = await metrics_gauge(session, base, a.admin_token, "realtime_connections")
                have = (m or {}).get("gauges", {}).get("realtime_connections", -1)
                if have >= res["connected_by_host"][h]:
                    break
                if time.time() > deadline:
                    res["invalid"].append("host %s reports %s realtime connections after 60 s, want %d (%s)" % (
                        base, have, res["connected_by_host"][h], err))
                    break
                await asyncio.sleep(0.1)
            res["host_connections_held_by_host"].append(have)
        res["host_connections_held"] = sum(res["host_connections_held_by_host"])
    await asyncio.sleep(1.0)
    sampler.phase = "held"
    await asyncio.sleep(0.5)
    res["rss_held_kb"] = sampler.sample()

    pids = [os.getpid()] + [p.pid for p in procs]
    cpu0 = {pid: cpu_seconds(pid) for pid in pids + a.server_pids}
    db0 = tree_cpu_seconds(a.db_pid) if a.db_pid else None
    busy0 = machine_busy_seconds()
    thr0 = thread_cpu(a.server_pid)
    w0 = time.time()
    sampler.phase = "write"
    stamp = {}
    writes, errors, max_inflight, skipped, unanswered = await writer(cfg, users, session, stamp, a.drain)
    acked = [i for i, w in enumerate(writes) if w and 200 <= w[1] < 300]
    expected_total = sum(subs_per_user[writes[i][0]] for i in acked)
    # Drain: wait for the last deliveries, at most --drain s after the schedule ended
    # (that time includes waiting for the last inserts to be answered).
    sampler.phase = "drain"
    d0 = time.time()
    while time.time() - stamp["schedule_end"] < a.drain:
        if not unanswered and sum(c.value for c in counters) >= expected_total:
            break
        await asyncio.sleep(0.02)
    res["drain_s"] = time.time() - d0
    w1 = time.time()
    cpu1 = {pid: cpu_seconds(pid) for pid in pids + a.server_pids}
    db1 = tree_cpu_seconds(a.db_pid) if a.db_pid else None
    busy1 = machine_busy_seconds()
    thr1 = thread_cpu(a.server_pid)
    window = w1 - w0
    for p in pipes:
        p.send("stop")
    results = await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in pipes))
    sampler.phase = "teardown"
    if a.server == "pylon":
        res["host_metrics_by_host"] = []
        for base in cfg["bases"]:
            m, err = await metrics_gauge(session, base, a.admin_token, "")
            res["host_metrics_by_host"].append(m)
        res["host_metrics"] = res["host_metrics_by_host"][0]
    for p in pipes:
        p.send("exit")
    if a.server == "pylon":
        # How long the hosts take to notice N clients gone (each WS disconnect relays a
        # presence frame to every other WS connection).
        td0 = time.time()
        have = None
        while time.time() - td0 < a.teardown_wait:
            have = 0
            for base in cfg["bases"]:
                try:
                    m, err = await metrics_gauge(session, base, a.admin_token, "")
                    g = (m or {}).get("gauges", {}).get("realtime_connections")
                    have = have + g if isinstance(g, (int, float)) and isinstance(have, (int, float)) else "n/a"
                except Exception as e:
                    have = "error %r" % (e,)
            if have == 0:
                break
            await asyncio.sleep(0.2)
        res["teardown_s"] = time.time() - td0
        res["teardown_connections_left"] = have
        res["host_alive_after"] = all(os.path.exists("/proc/%d" % p) for p in a.server_pids)
    await session.close()

    # ---- verify and aggregate
    # A row counts as written when its insert was answered 2xx, or when any subscriber
    # received it (it was committed even though its insert was not answered in time).
    owner_of = {i: w[0] for i, w in enumerate(writes) if w and w[1] != -1}
    subs = []
    for r in results:
        if "fatal" in r:
            die("a subscriber process failed: %s" % r["fatal"])
        for s in r["subs"]:
            got = array.array("i")
            got.frombytes(s["got"])
            lat = array.array("d")
            lat.frombytes(s["lat"])
            sq = array.array("q")
            sq.frombytes(s.get("seq", b""))
            s["seqs"] = sq
            subs.append((s, got, lat))
    acked_set = set(acked)
    seen_rows = set()
    for s, got, _ in subs:
        seen_rows.update(i for i in got if owner_of.get(i) == s["owner_idx"])
    unacked_rows = seen_rows - acked_set
    written = acked_set | unacked_rows
    expected_total = sum(subs_per_user[owner_of[i]] for i in written)
    by_owner = {}
    for i in written:
        by_owner.setdefault(owner_of[i], set()).add(i)
    lats = array.array("d")
    write_host = stamp.get("write_host") or []
    lats_by_kind = {"same": array.array("d"), "cross": array.array("d")}
    seq_of = {}          # write index -> seq, as the first subscriber saw it
    order_bad = seq_mismatch = 0
    order_samples = []
    delivered = missing = dups = foreign = unacked = 0
    bad_subs, closed, samples, other_frames = 0, [], [], 0
    for s, got, lat in subs:
            want = by_owner.get(s["owner_idx"], set())
            seen = set()
            sub_missing = sub_dups = sub_foreign = 0
            for i, l in zip(got, lat):
                if owner_of.get(i) != s["owner_idx"]:
                    sub_foreign += 1
                    continue
                if i in seen:
                    sub_dups += 1
                    continue
                seen.add(i)
                if i not in acked_set:
                    unacked += 1
                lats.append(l)
                if len(cfg["bases"]) > 1 and i < len(write_host):
                    lats_by_kind["same" if s.get("host", 0) == write_host[i] else "cross"].append(l)
            sq = s["seqs"]
            if len(sq) == len(got) and (len(sq) == 0 or sq[0] >= 0):
                for k in range(len(sq)):
                    if k and sq[k] <= sq[k - 1]:
                        order_bad += 1
                        if len(order_samples) < 5:
                            order_samples.append("subscriber %d: seq %d after seq %d" % (s["gidx"], sq[k], sq[k - 1]))
                    first = seq_of.setdefault(got[k], sq[k])
                    if first != sq[k]:
                        seq_mismatch += 1
                        if len(order_samples) < 5:
                            order_samples.append("row %d: seq %d at subscriber %d, %d elsewhere" % (
                                got[k], sq[k], s["gidx"], first))
            sub_missing = len(want - seen)
            delivered += len(seen & want)
            missing += sub_missing
            dups += sub_dups
            foreign += sub_foreign
            other_frames += s["other"]
            if s["closed"]:
                closed.append((s["gidx"], s["closed"]))
            if sub_missing or sub_dups or sub_foreign or s["parse_err"]:
                bad_subs += 1
                if len(samples) < 5:
                    samples.append("subscriber %d (user %d): got %d, want %d, missing %d, dup %d, foreign %d%s%s" % (
                        s["gidx"], s["owner_idx"], len(got), len(want), sub_missing, sub_dups, sub_foreign,
                        ", closed: " + s["closed"] if s["closed"] else "",
                        ", " + s["parse_err"] if s["parse_err"] else ""))
    lats = sorted(lats)
    if len(cfg["bases"]) > 1:
        res["latency_same_ms"] = _summ(sorted(lats_by_kind["same"]))
        res["latency_cross_ms"] = _summ(sorted(lats_by_kind["cross"]))
        res["bases"] = cfg["bases"]
        res["write_to"] = cfg["write_to"]
    res["seq_checked"] = bool(seq_of)
    res["seq_order_violations"] = order_bad
    res["seq_mismatches"] = seq_mismatch
    res["seq_samples"] = order_samples
    if order_bad or seq_mismatch:
        res["invalid"].append("seq order: %d deliveries out of seq order, %d rows seen with different seqs; e.g. %s" % (
            order_bad, seq_mismatch, order_samples[:3]))
    n_err = sum(1 for w in writes if w and w[1] >= 0 and not 200 <= w[1] < 300) - unanswered
    res.update({
        "writes_planned": len(writes), "writes_acked": len(acked), "write_errors": n_err,
        "writes_skipped": skipped, "writes_unanswered": unanswered,
        "write_rate_acked": len(acked) / max(1e-9, stamp["schedule_end"] - stamp["write_start"]),
        "write_error_samples": errors,
        "write_rate_achieved": len(writes) / max(1e-9, stamp["schedule_end"] - stamp["write_start"]),
        "write_http_ms": _summ(sorted(w[2] for w in writes if w and w[2] is not None)),
        "write_lag_ms_max": max((w[3] for w in writes if w), default=0),
        "writer_max_inflight": max_inflight,
        "expected": expected_total, "delivered": delivered, "missing": missing,
        "duplicates": dups, "foreign": foreign, "unacked_delivered": unacked,
        "rows_seen_unacked": len(unacked_rows),
        "bad_subscribers": bad_subs, "bad_samples": samples,
        "closed_early": len(closed), "closed_samples": closed[:5], "other_frames": other_frames,
        "latency_ms": _summ(lats),
        "window_s": window,
        "server_cpu_s": sum(_d(cpu1[p], cpu0[p]) or 0 for p in a.server_pids),
        "server_cpu_s_by_host": [_d(cpu1[p], cpu0[p]) for p in a.server_pids],
        "db_cpu_s": _d(db1, db0) if a.db_pid else None,
        "machine_busy_s": busy1 - busy0,
        "server_threads": sorted(([n, t - thr0.get(tid, (n, 0.0))[1]] for tid, (n, t) in thr1.items()),
                                 key=lambda x: -x[1])[:8],
        "loadgen_cpu_s": sum(_d(cpu1[p], cpu0[p]) or 0 for p in pids),
        "loadgen_cpu_s_by_process": {("writer" if p == pids[0] else "subscribers-%d" % k): _d(cpu1[p], cpu0[p])
                                     for k, p in enumerate(pids)},
    })
    res["other_cpu_s"] = max(0.0, res["machine_busy_s"] - res["server_cpu_s"] - res["loadgen_cpu_s"]
                             - (res["db_cpu_s"] or 0))
    if n_err:
        res["invalid"].append("%d of %d writes failed, e.g. %s" % (n_err, len(writes), errors[:2]))
    if skipped or unanswered:
        res["invalid"].append("the writer could not hold %.0f rows/s: %d of %d rows skipped because %d inserts were already unanswered, %d inserts still unanswered %.0f s after the last was sent (abandoned)" % (
            a.rate, skipped, len(writes), a.inflight, unanswered, a.drain))
    if unacked_rows:
        res["invalid"].append("%d rows reached subscribers although their insert was not answered in time; they count as written (in expected and in the latencies)" % len(unacked_rows))
    if missing:
        res["invalid"].append("%d of %d expected deliveries had not arrived %.0f s after the last write was sent" % (
            missing, expected_total, a.drain))
    if dups or foreign:
        res["invalid"].append("deliveries wrong: %d duplicates, %d rows of another user (policy leak); %d subscribers affected" % (
            dups, foreign, bad_subs))
    if closed:
        res["invalid"].append("%d subscribers were closed during the run, e.g. %s" % (len(closed), closed[:2]))
    return res


def _d(b, a):
    return None if a is None or b is None else b - a


def _summ(vals):
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "p50": pct(vals, 50), "p90": pct(vals, 90), "p99": pct(vals, 99),
            "p999": pct(vals, 99.9), "max": vals[-1], "min": vals[0],
            "mean": sum(vals) / len(vals)}


# ---------------------------------------------------------------- report
def f1(v):
    return "n/a" if v is None else "%.1f" % v


def report(out_md, header_file, *files):
    rs = [json.load(open(f)) for f in files]
    lines = [open(header_file).read().rstrip("\n"), ""]
    lines.append("| N | server | p50 ms | p99 ms | max ms | delivered/expected | peak RSS MB |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|")
    for r in rs:
        L = r["latency_ms"]
        mark = " ⚠" if r["invalid"] else ""
        peak = max(v for k, v in r["rss_peak_kb_by_phase"].items() if k != "teardown")
        lines.append("| %d | %s | %s | %s | %s | %d/%d%s | %.0f |" % (
            r["n"], "pylon (WS)" if r["server"] == "pylon" else "PocketBase (SSE)",
            f1(L.get("p50")), f1(L.get("p99")), f1(L.get("max")), r["delivered"], r["expected"], mark,
            peak / 1024.0))
    lines += ["", "Details (window = first write to end of drain):", ""]
    lines.append("| N | server | writes ok/planned | rows/s acked | insert HTTP p50/p99 ms | RSS idle → held → peak MB | server CPU | load-gen CPU | other processes CPU | connect s | drain s | p90 / p99.9 ms |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rs:
        L, H = r["latency_ms"], r["write_http_ms"]
        peak = max(v for k, v in r["rss_peak_kb_by_phase"].items() if k != "teardown")
        win = r["window_s"]
        lg = r["loadgen_cpu_s_by_process"]
        lines.append("| %d | %s | %d/%d%s | %.1f | %s / %s | %.0f → %.0f → %.0f | %.0f%% | %.0f%% (%s) | %.0f%% | %.1f | %.1f | %s / %s |" % (
            r["n"], r["server"], r["writes_acked"], r["writes_planned"],
            " (+%d unanswered but delivered)" % r["rows_seen_unacked"] if r.get("rows_seen_unacked") else "",
            r["write_rate_acked"],
            f1(H.get("p50")), f1(H.get("p99")),
            r["rss_idle_kb"] / 1024.0, (r["rss_held_kb"] or 0) / 1024.0, peak / 1024.0,
            100.0 * (r["server_cpu_s"] or 0) / win, 100.0 * r["loadgen_cpu_s"] / win,
            ", ".join("%s %.0f%%" % (k, 100.0 * (v or 0) / win) for k, v in lg.items()),
            100.0 * max(0.0, r["machine_busy_s"] - (r["server_cpu_s"] or 0) - r["loadgen_cpu_s"]) / win,
            r["connect_s"], r["drain_s"], f1(L.get("p90")), f1(L.get("p999"))))
    lines.append("")
    lines.append("CPU: user+system time over the window as a share of one core (the machine has %d). "
                 "Load-gen = the writer process + the subscriber processes. Other processes = the whole "
                 "machine's busy time (/proc/stat) minus both: anything else running at the time." % os.cpu_count())
    # teardown + host counters
    for r in rs:
        if r["server"] == "pylon" and "teardown_s" in r:
            tpk = r["rss_peak_kb_by_phase"].get("teardown")
            c = ((r.get("host_metrics") or {}).get("counters") or {})
            left = r["teardown_connections_left"]
            lines.append("- pylon N=%d: after the clients closed all %d sockets at once the host reported %s realtime connections %.1f s later (RSS peak in that time %s MB); host counters at the end of the drain: %s." % (
                r["n"], r["connected"], "%g" % left if isinstance(left, (int, float)) else left, r["teardown_s"],
                "n/a" if tpk is None else "%.0f" % (tpk / 1024.0),
                ", ".join("%s %s" % kv for kv in sorted(c.items()) if kv[0].startswith("realtime_")) or "none"))
    for r in rs:
        th = [t for t in r.get("server_threads", []) if t[1] / r["window_s"] >= 0.02]
        if th:
            lines.append("- %s N=%d, busiest server threads (share of one core over the window): %s" % (
                r["server"], r["n"], ", ".join("%s %.0f%%" % (n, 100 * t / r["window_s"]) for n, t in th[:6])))
    # goals
    by = {(r["n"], r["server"]): r for r in rs}
    lines.append("")
    g = []
    for (n, s), r in sorted(by.items()):
        if s == "pylon" and n >= 10000:
            peak = max(v for k, v in r["rss_peak_kb_by_phase"].items() if k != "teardown") / 1024.0
            ok = r["connected"] >= 10000 and peak <= 300 and not r["invalid"]
            g.append("- goal: %d subscribers held with host RSS ≤ 300 MB: **%s** (peak %.0f MB%s)" % (
                n, "met" if ok else "NOT met", peak, "; run invalid" if r["invalid"] else ""))
        if s == "pylon" and n == 1000 and r["rate"] >= 100:
            p99 = r["latency_ms"].get("p99")
            ok = p99 is not None and p99 <= 50 and not r["invalid"]
            g.append("- goal: p99 ≤ 50 ms at 1,000 subscribers × %.0f writes/s: **%s** (p99 %s ms)" % (
                r["rate"], "met" if ok else "NOT met", f1(p99)))
        if s == "pylon" and (n, "pocketbase") in by:
            a, b = r["latency_ms"].get("p99"), by[(n, "pocketbase")]["latency_ms"].get("p99")
            if a and b:
                ok = b / a >= 3 and not r["invalid"]
                g.append("- goal: p99 ≥ 3× lower than PocketBase at N=%d: **%s** (%.1f ms vs %.1f ms, %.1f×%s)" % (
                    n, "met" if ok else "NOT met", a, b, b / a,
                    "; PocketBase run incomplete, its p99 covers only what it delivered" if by[(n, "pocketbase")]["invalid"] else ""))
    lines += g
    for r in rs:
        other = max(0.0, r["machine_busy_s"] - (r["server_cpu_s"] or 0) - r["loadgen_cpu_s"]) / r["window_s"]
        if other > 0.10:
            lines.append("- **disturbed:** N=%d %s: other processes used %.0f%% of a core during the window; "
                         "the figures of this run are not comparable (rerun on an idle machine)." % (
                             r["n"], r["server"], 100 * other))
    return write_report(out_md, lines, rs, lambda r: "N=%d %s" % (r["n"], r["server"]))


def write_report(out_md, lines, rs, name):
    """Appends the problems of the runs that had any (name(r) says which run), writes the
    report; returns 3 when a run had problems, else 0."""
    bad = [r for r in rs if r["invalid"]]
    if bad:
        lines += ["", "**⚠ Runs with problems (figures marked ⚠):**"]
        for r in bad:
            for why in r["invalid"]:
                lines.append("- %s: %s" % (name(r), why))
            for x in r["bad_samples"][:3] + r.get("seq_samples", [])[:3]:
                lines.append("  - %s" % x)
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 3 if bad else 0


def report_crosshost(out_md, header_file, *files):
    """Cross-host table for bench/crosshost.sh; returns 3 when a run had problems."""
    rs = [json.load(open(f)) for f in files]
    lines = [open(header_file).read().rstrip("\n"), ""]

    def pq(L, *ks):
        return " / ".join(f1(L.get(k)) for k in ks)

    lines.append("| writes to | poll ms | subscribers per host | writes/s | same-host p50 / p99 ms | cross-host p50 / p99 / max ms | delivered / expected | duplicates / missing / out of seq order |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rs:
        mark = " ⚠" if r["invalid"] else ""
        lines.append("| %s | %s | %s | %.0f | %s | %s | %d / %d%s | %d / %d / %d |" % (
            "host A" if r["write_to"] == "first" else "A and B alternately", r["label"] or "n/a",
            " / ".join(str(x) for x in r["connected_by_host"]), r["rate"],
            pq(r["latency_same_ms"], "p50", "p99"), pq(r["latency_cross_ms"], "p50", "p99", "max"),
            r["delivered"], r["expected"], mark, r["duplicates"], r["missing"],
            r["seq_order_violations"] + r["seq_mismatches"]))
    lines += ["", "Details (window = first write to end of drain; CPU as a share of one core):", ""]
    lines.append("| writes to | poll ms | writes ok / planned | insert HTTP p50 / p99 ms | cross-host p90 / p99.9 ms | same-host max ms | host CPU (A / B) | PostgreSQL CPU | load-gen CPU | other processes CPU | connect s | drain s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rs:
        win = r["window_s"]
        H = r["write_http_ms"]
        lines.append("| %s | %s | %d / %d | %s | %s | %s | %s | %s | %.0f%% | %.0f%% | %.1f | %.1f |" % (
            "A" if r["write_to"] == "first" else "alternate", r["label"] or "n/a",
            r["writes_acked"], r["writes_planned"], pq(H, "p50", "p99"),
            pq(r["latency_cross_ms"], "p90", "p999"), f1(r["latency_same_ms"].get("max")),
            " / ".join("%.0f%%" % (100.0 * (c or 0) / win) for c in r["server_cpu_s_by_host"]),
            "n/a" if r.get("db_cpu_s") is None else "%.0f%%" % (100.0 * r["db_cpu_s"] / win),
            100.0 * r["loadgen_cpu_s"] / win, 100.0 * r["other_cpu_s"] / win,
            r["connect_s"], r["drain_s"]))
    lines.append("")
    for r in rs:
        L = r["latency_cross_ms"]
        p99 = L.get("p99")
        ok = p99 is not None and p99 <= 100 and not r["invalid"] and r["rate"] >= 100
        disturbed = int(100 * r["other_cpu_s"] / r["window_s"]) > 10  # as crosshost.sh's retry
        lines.append("- goal: cross-host p99 ≤ 100 ms at %.0f writes/s (writes to %s, poll %s ms): **%s** (p99 %s ms%s)%s" % (
            r["rate"], "A" if r["write_to"] == "first" else "A and B", r["label"] or "?",
            "met" if ok else "NOT met", f1(p99), "; run has problems" if r["invalid"] else "",
            " — **disturbed run: not a valid measurement**" if disturbed else ""))
        if not r.get("seq_checked"):
            lines.append("  - (no seq in the events: order not checked)")
        if disturbed:
            lines.append("  - **disturbed:** other processes used %.0f%% of a core during the window; rerun on an idle machine" % (
                100 * r["other_cpu_s"] / r["window_s"]))
    return write_report(out_md, lines, rs, lambda r: "writes to %s, poll %s ms" % (r["write_to"], r["label"]))


def main(argv):
    if not argv:
        die("usage: see the module docstring")
    cmd, args = argv[0], argv[1:]
    if cmd == "setup-pylon" and len(args) == 4:
        setup_pylon(*args)
    elif cmd == "setup-pb" and len(args) == 5:
        setup_pb(*args)
    elif cmd == "run":
        run(args)
    elif cmd == "report" and len(args) >= 3:
        sys.exit(report(*args))
    elif cmd == "report-crosshost" and len(args) >= 3:
        sys.exit(report_crosshost(*args))
    else:
        die("unknown command or wrong arguments: %s" % " ".join(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
