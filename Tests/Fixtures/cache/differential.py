#!/usr/bin/env python3
"""Differential test: the same seeded sequence of commands goes to CacheRESP and to a
real redis-server, one command at a time; every reply must be equal.

    differential.py CACHE_PORT REDIS_PORT [--seed N] [--count N] [--resp 2|3]

Documented differences, normalized before comparing (README, "Cache"):
  - unordered replies (SMEMBERS SINTER SUNION HKEYS HVALS HGETALL KEYS) are sorted;
  - TTL may differ by 1 s and PTTL by 2 s (the two servers see a command at different
    instants); SCAN is compared as the set of keys a full iteration returns;
  - INFO, CLIENT ID, HELLO's id and COMMAND output are not generated.
Exits 1 and prints each mismatch (command, both replies) when any reply differs."""
import random
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from resp_client import Conn  # noqa: E402

KEYS = ["k%d" % i for i in range(8)]
VALUES = ["", "a", "hello", "10", "-5", "3.5", "1e3", "abc def", "\x00\xff bin", "9223372036854775807",
          "-9223372036854775808", " 5", "007", "0", "42", "-0", "1.5e-3", "+1"]
FIELDS = ["f%d" % i for i in range(5)]
MEMBERS = ["m%d" % i for i in range(6)] + ["", "a b"]
INTS = ["-3", "-1", "0", "1", "2", "5", "100", "x", "1.5", "9223372036854775807", "-9223372036854775808", "", " 1", "01"]
FLOATS = ["1.5", "-2", "0", "inf", "-inf", "+inf", "x", "1e2", "nan", "3", "-0.25", "1e400", " 1", "0x10", ""]
BOUNDS = ["-inf", "+inf", "0", "1", "(1", "2.5", "(2.5", "-1", "x", "(", "5"]
PATTERNS = ["*", "k*", "k[0-3]", "k?", "*1", "nomatch", "k[^1]", "\\k*", "[k]*", "*k*", "k*?", "*?*", "k**1", "?*1*",
            "*[0-3]", "k[", "k[1-", "[a-l]?", "[^k]*", "k\\", "*k*1*", "**", "*?1"]


def pick(rng, xs):
    return rng.choice(xs)


def gen_command(rng, now_s):
    k = pick(rng, KEYS)
    v = pick(rng, VALUES)
    i = pick(rng, INTS)
    r = rng.random()
    small = str(rng.randint(-4, 6))
    cmds = [
        # strings
        lambda: ["SET", k, v] + rng.choice([[], ["NX"], ["XX"], ["GET"], ["EX", "100"], ["PX", "100000"], ["KEEPTTL"],
                                            ["EX", i], ["EXAT", str(now_s + 500)], ["PXAT", str((now_s + 500) * 1000)],
                                            ["NX", "GET"], ["XX", "GET", "EX", "50"], ["EX", "10", "PX", "10"],
                                            ["KEEPTTL", "EX", "5"], ["FOO"], ["EX", "0"], ["EX", "-5"], ["EXAT", "1"]]),
        lambda: ["GET", k],
        lambda: ["MGET"] + rng.sample(KEYS, rng.randint(1, 4)),
        lambda: ["MSET"] + sum([[pick(rng, KEYS), pick(rng, VALUES)] for _ in range(rng.randint(1, 3))], []) + ([k] if r < 0.1 else []),
        lambda: ["SETNX", k, v],
        lambda: ["GETDEL", k],
        lambda: ["GETEX", k] + rng.choice([[], ["PERSIST"], ["EX", "100"], ["PX", "200000"], ["EX", i], ["EXAT", str(now_s + 300)],
                                           ["PERSIST", "EX", "5"], ["BAD"], ["EX"], ["PXAT", "5"]]),
        lambda: ["GETSET", k, v],
        lambda: ["INCR", k],
        lambda: ["DECR", k],
        lambda: ["INCRBY", k, i],
        lambda: ["DECRBY", k, i],
        lambda: ["INCRBYFLOAT", k, pick(rng, FLOATS + ["0.1", "10.5", "-3.25", "1e-5"])],
        lambda: ["APPEND", k, v],
        lambda: ["STRLEN", k],
        lambda: ["GETRANGE", k, small, str(rng.randint(-5, 8))] if r > 0.1 else ["GETRANGE", k, i, "2"],
        # keys
        lambda: ["DEL"] + rng.sample(KEYS, rng.randint(1, 3)),
        lambda: ["UNLINK", k],
        lambda: ["EXISTS"] + [pick(rng, KEYS) for _ in range(rng.randint(1, 3))],
        lambda: ["TYPE", k],
        lambda: ["EXPIRE", k, pick(rng, ["100", "1000", "-1", "0", "x", "50", "9223372036854775807"])] + rng.choice([[], [], ["NX"], ["XX"], ["GT"], ["LT"], ["NX", "XX"], ["GT", "LT"], ["FOO"]]),
        lambda: ["PEXPIRE", k, pick(rng, ["100000", "-5", "500000", "y"])] + rng.choice([[], ["XX"], ["GT"]]),
        lambda: ["EXPIREAT", k, pick(rng, [str(now_s + 1000), "1", str(now_s + 200), "z"])],
        lambda: ["PEXPIREAT", k, pick(rng, [str((now_s + 800) * 1000), "5"])],
        lambda: ["TTL", k],
        lambda: ["PTTL", k],
        lambda: ["PERSIST", k],
        lambda: ["KEYS", pick(rng, PATTERNS)],
        lambda: ["RENAME", k, pick(rng, KEYS)],
        lambda: ["DBSIZE"],
        # hashes
        lambda: ["HSET", k] + sum([[pick(rng, FIELDS), pick(rng, VALUES)] for _ in range(rng.randint(1, 3))], []) + ([v] if r < 0.1 else []),
        lambda: ["HMSET", k, pick(rng, FIELDS), v],
        lambda: ["HGET", k, pick(rng, FIELDS)],
        lambda: ["HMGET", k] + rng.sample(FIELDS, 2),
        lambda: ["HDEL", k] + rng.sample(FIELDS, rng.randint(1, 3)),
        lambda: ["HGETALL", k],
        lambda: ["HKEYS", k],
        lambda: ["HVALS", k],
        lambda: ["HLEN", k],
        lambda: ["HEXISTS", k, pick(rng, FIELDS)],
        lambda: ["HINCRBY", k, pick(rng, FIELDS), i],
        # lists
        lambda: ["LPUSH", k] + [pick(rng, VALUES) for _ in range(rng.randint(1, 3))],
        lambda: ["RPUSH", k] + [pick(rng, VALUES) for _ in range(rng.randint(1, 3))],
        lambda: ["LPOP", k] + rng.choice([[], [], ["2"], ["0"], ["-1"], ["x"], ["10"]]),
        lambda: ["RPOP", k] + rng.choice([[], [], ["3"], ["0"]]),
        lambda: ["LRANGE", k, small, str(rng.randint(-3, 8))],
        lambda: ["LLEN", k],
        lambda: ["LINDEX", k, small],
        lambda: ["LREM", k, pick(rng, ["0", "1", "-1", "2", "x"]), v],
        lambda: ["LTRIM", k, small, str(rng.randint(-3, 6))],
        # sets
        lambda: ["SADD", k] + [pick(rng, MEMBERS) for _ in range(rng.randint(1, 3))],
        lambda: ["SREM", k] + [pick(rng, MEMBERS) for _ in range(rng.randint(1, 2))],
        lambda: ["SMEMBERS", k],
        lambda: ["SISMEMBER", k, pick(rng, MEMBERS)],
        lambda: ["SCARD", k],
        lambda: ["SINTER"] + rng.sample(KEYS, rng.randint(1, 3)),
        lambda: ["SUNION"] + rng.sample(KEYS, rng.randint(1, 3)),
        # sorted sets
        lambda: ["ZADD", k] + rng.choice([[], [], ["NX"], ["XX"], ["CH"], ["INCR"], ["GT"], ["LT", "CH"], ["NX", "XX"], ["GT", "LT"], ["NX", "GT"]])
                + sum([[pick(rng, FLOATS[:6] + ["1", "2", "10"]), pick(rng, MEMBERS)] for _ in range(rng.randint(1, 2))], []),
        lambda: ["ZINCRBY", k, pick(rng, FLOATS), pick(rng, MEMBERS)],
        lambda: ["ZREM", k] + [pick(rng, MEMBERS) for _ in range(rng.randint(1, 2))],
        lambda: ["ZSCORE", k, pick(rng, MEMBERS)],
        lambda: ["ZCARD", k],
        lambda: ["ZRANGE", k, small, str(rng.randint(-3, 6))] + rng.choice([[], ["WITHSCORES"], ["REV"], ["REV", "WITHSCORES"], ["LIMIT", "0", "1"], ["BAD"]]),
        lambda: ["ZRANGE", k, pick(rng, BOUNDS), pick(rng, BOUNDS), "BYSCORE"] + rng.choice([[], ["WITHSCORES"], ["LIMIT", "1", "2"], ["REV"], ["LIMIT", "0", "-1", "WITHSCORES"]]),
        lambda: ["ZRANGEBYSCORE", k, pick(rng, BOUNDS), pick(rng, BOUNDS)] + rng.choice([[], ["WITHSCORES"], ["LIMIT", "0", "2"], ["LIMIT", "1", "-1", "WITHSCORES"], ["LIMIT", "-1", "2"], ["LIMIT", "x", "1"], ["FOO"]]),
        lambda: ["ZREVRANGE", k, small, str(rng.randint(-3, 6))] + rng.choice([[], ["WITHSCORES"]]),
        lambda: ["ZRANK", k, pick(rng, MEMBERS)],
        # pub/sub without subscribers, connection bits
        lambda: ["PUBLISH", pick(rng, ["ch1", "ch2"]), v],
        lambda: ["PUBSUB", "NUMSUB", "ch1", "ch2"],
        lambda: ["PUBSUB", "CHANNELS"],
        lambda: ["PING"] + rng.choice([[], ["hi"]]),
        lambda: ["ECHO", v],
        lambda: ["SELECT", pick(rng, ["0", "x"])],
        lambda: ["NOSUCHCMD", k],
        lambda: ["CLIENT", "GETNAME"],
        lambda: ["CLIENT", "SETNAME", pick(rng, ["conn1", "bad name", ""])],
        lambda: ["CLIENT", "NOPE"],
    ]
    cmd = rng.choice(cmds)()
    # Sometimes a wrong number of arguments.
    if rng.random() < 0.03:
        cmd = cmd[:1] if len(cmd) > 2 else cmd + ["extra", "args", "here"]
    return cmd


UNORDERED = {"SMEMBERS", "SINTER", "SUNION", "HKEYS", "HVALS", "KEYS"}


def norm(cmd, reply, queued=None):
    name = cmd[0].upper()
    if reply[0] in ("arr", "set") and name in UNORDERED:
        return ("unordered", sorted(repr(x) for x in reply[1]))
    if name == "HGETALL":
        if reply[0] == "map":
            return ("pairs", sorted(repr(p) for p in reply[1]))
        if reply[0] == "arr":
            items = reply[1]
            return ("pairs", sorted(repr((items[j], items[j + 1])) for j in range(0, len(items), 2)))
    if name == "EXEC" and reply[0] == "arr" and queued is not None and len(queued) == len(reply[1]):
        return ("exec", [norm(q, r) for q, r in zip(queued, reply[1])])
    return reply


def close_enough(cmd, a, b, queued=None):
    name = cmd[0].upper()
    # EXEC: each queued command's reply by that command's rules (a TTL inside MULTI too).
    if a[0] == b[0] == "exec" and queued is not None and len(a[1]) == len(b[1]) == len(queued):
        return all(close_enough(q, x, y) for q, x, y in zip(queued, a[1], b[1]))
    if name in ("TTL", "PTTL") and a[0] == b[0] == "int":
        if a[1] < 0 or b[1] < 0:
            return a == b
        return abs(a[1] - b[1]) <= (1 if name == "TTL" else 2000)
    return a == b


def full_scan(conn, extra):
    keys, cursor = set(), b"0"
    for _ in range(100000):
        r = conn.call("SCAN", cursor, *extra)
        assert r[0] == "arr", r
        cursor = r[1][0][1]
        keys.update(x[1] for x in r[1][1][1])
        if cursor == b"0":
            return keys
    raise RuntimeError("SCAN did not finish")


def main():
    args = sys.argv[1:]
    cache_port, redis_port = int(args[0]), int(args[1])
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
    count = int(args[args.index("--count") + 1]) if "--count" in args else 3000
    resp = int(args[args.index("--resp") + 1]) if "--resp" in args else 2
    rng = random.Random(seed)
    a, b = Conn(cache_port), Conn(redis_port)
    for c in (a, b):
        c.call("FLUSHALL")
        if resp == 3:
            h = c.call("HELLO", "3")
            assert h[0] == "map", h
    now_s = int(time.time())
    mismatches = []
    in_multi = False
    queued = []
    compared = 0
    for n in range(count):
        if not in_multi and rng.random() < 0.02:
            cmd = ["MULTI"]
            in_multi = True
            queued = []
        elif in_multi and rng.random() < 0.2:
            cmd = [rng.choice(["EXEC", "EXEC", "DISCARD"])]
            in_multi = False
        else:
            cmd = gen_command(rng, now_s)
            if in_multi:
                queued.append(cmd)
        ra, rb = a.call(*cmd), b.call(*cmd)
        compared += 1
        if not close_enough(cmd, norm(cmd, ra, queued), norm(cmd, rb, queued), queued):
            mismatches.append((n, cmd, ra, rb))
            if len(mismatches) >= 30:
                break
    if in_multi:
        a.call("DISCARD"), b.call("DISCARD")
    # The final data must be the same too.
    for k in KEYS:
        for cmd in (["TYPE", k], ["GET", k], ["LRANGE", k, "0", "-1"], ["HGETALL", k], ["SMEMBERS", k],
                    ["ZRANGE", k, "0", "-1", "WITHSCORES"], ["TTL", k]):
            ra, rb = a.call(*cmd), b.call(*cmd)
            compared += 1
            if not close_enough(cmd, norm(cmd, ra), norm(cmd, rb)):
                mismatches.append(("final", cmd, ra, rb))
    # SCAN: a full iteration returns the same set of keys (the cursors differ).
    for c in (a, b):
        c.call("MSET", *sum([["scan:%d" % j, "v"] for j in range(300)], []))
        c.call("SADD", "scan:set", "x")
    for extra in ([], ["COUNT", "7"], ["MATCH", "scan:1*"], ["TYPE", "set"], ["MATCH", "k*", "COUNT", "1000"]):
        sa, sb = full_scan(a, extra), full_scan(b, extra)
        compared += 1
        if sa != sb:
            mismatches.append(("scan", extra, sorted(sa - sb)[:10], sorted(sb - sa)[:10]))
    for cmd in (["SCAN", "x"], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "FOO"]):
        ra, rb = a.call(*cmd), b.call(*cmd)
        compared += 1
        if ra != rb:
            mismatches.append(("scan-error", cmd, ra, rb))
    for m in mismatches:
        print("MISMATCH at %s: %r\n  cache: %r\n  redis: %r" % m)
    print("differential: seed=%d resp=%d commands=%d compared=%d mismatches=%d" % (seed, resp, count, compared, len(mismatches)))
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
