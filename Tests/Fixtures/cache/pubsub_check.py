#!/usr/bin/env python3
"""Pub/sub across three raw clients (RESP2 channel, RESP2 pattern, RESP3 push frames)
plus the `redis` client's PubSub object.

    pubsub_check.py PORT"""
import sys
import time

import redis

sys.path.insert(0, __import__("os").path.dirname(__file__))
from resp_client import Conn  # noqa: E402


def bulk(s):
    return ("bulk", s.encode() if isinstance(s, str) else s)


def main():
    port = int(sys.argv[1])
    c1, c2, c3, pub = Conn(port), Conn(port), Conn(port), Conn(port)
    assert c1.call("SUBSCRIBE", "news", "sports") == ("arr", [bulk("subscribe"), bulk("news"), ("int", 1)])
    assert c1.read() == ("arr", [bulk("subscribe"), bulk("sports"), ("int", 2)])
    assert c2.call("PSUBSCRIBE", "n*") == ("arr", [bulk("psubscribe"), bulk("n*"), ("int", 1)])
    assert c3.call("HELLO", "3")[0] == "map"
    assert c3.call("SUBSCRIBE", "news") == ("push", [bulk("subscribe"), bulk("news"), ("int", 1)])
    assert c3.call("PSUBSCRIBE", "s[op]*") == ("push", [bulk("psubscribe"), bulk("s[op]*"), ("int", 2)])
    # RESP2 subscribers may only (un)subscribe, ping and quit.
    err = c1.call("GET", "x")
    assert err[0] == "err" and b"only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET" in err[1], err
    assert c1.call("PING") == ("arr", [bulk("pong"), bulk("")])
    # RESP3 subscribers keep running commands; replies and pushes are told apart by type.
    assert c3.call("SET", "k", "v") == ("str", b"OK")
    assert c3.call("GET", "k") == bulk("v")

    assert pub.call("PUBLISH", "news", "hello") == ("int", 3)
    assert c1.read() == ("arr", [bulk("message"), bulk("news"), bulk("hello")])
    assert c2.read() == ("arr", [bulk("pmessage"), bulk("n*"), bulk("news"), bulk("hello")])
    assert c3.read() == ("push", [bulk("message"), bulk("news"), bulk("hello")])
    assert pub.call("PUBLISH", "sports", "goal") == ("int", 2)
    assert c1.read() == ("arr", [bulk("message"), bulk("sports"), bulk("goal")])
    assert c3.read() == ("push", [bulk("pmessage"), bulk("s[op]*"), bulk("sports"), bulk("goal")])
    assert pub.call("PUBLISH", "weather", "rain") == ("int", 0)

    chans = pub.call("PUBSUB", "CHANNELS")
    assert sorted(x[1] for x in chans[1]) == [b"news", b"sports"], chans
    assert pub.call("PUBSUB", "NUMSUB", "news", "none") == ("arr", [bulk("news"), ("int", 2), bulk("none"), ("int", 0)])
    assert pub.call("PUBSUB", "NUMPAT") == ("int", 2)

    assert c1.call("UNSUBSCRIBE", "news") == ("arr", [bulk("unsubscribe"), bulk("news"), ("int", 1)])
    assert pub.call("PUBLISH", "news", "again") == ("int", 2)
    assert c2.read()[1][3] == bulk("again")
    assert c3.read()[1][2] == bulk("again")
    assert c2.call("PUNSUBSCRIBE") == ("arr", [bulk("punsubscribe"), bulk("n*"), ("int", 0)])
    # Out of subscribed mode, c2 runs commands again.
    assert c2.call("GET", "k") == bulk("v")

    # The redis client's PubSub object.
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    p = r.pubsub()
    p.subscribe("py")
    p.psubscribe("py.*")
    deadline = time.time() + 20
    got = []
    while len(got) < 2 and time.time() < deadline:
        m = p.get_message(timeout=1)
        if m:
            got.append(m["type"])
    assert got == ["subscribe", "psubscribe"], got
    assert r.publish("py", "one") == 1 and r.publish("py.x", "two") == 1
    msgs = []
    while len(msgs) < 2 and time.time() < deadline:
        m = p.get_message(timeout=1)
        if m:
            msgs.append((m["type"], m["channel"], m["data"]))
    assert msgs == [("message", "py", "one"), ("pmessage", "py.x", "two")], msgs
    p.close()
    for c in (c1, c2, c3, pub):
        c.close()
    print("pubsub: ok")


if __name__ == "__main__":
    main()
