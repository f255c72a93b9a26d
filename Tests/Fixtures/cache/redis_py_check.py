#!/usr/bin/env python3
"""Every command of issue 6 through the Python `redis` client, in RESP2 and RESP3.

    redis_py_check.py PORT [--password PW]

Exits non-zero (with the failing assertion) when a reply is not what Redis gives."""
import sys
import time

import redis


def check(port, protocol, password=None):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, password=password, decode_responses=True)
    r.flushall()
    # connection
    assert r.ping() is True
    assert r.echo("hi") == "hi"
    assert r.execute_command("SELECT", 0) in (True, "OK")
    r.client_setname("py-check")
    assert r.client_getname() == "py-check"
    assert isinstance(r.client_id(), int)
    assert r.command_count() > 80
    info = r.info()
    assert info["redis_version"] and "connected_clients" in info, info
    assert r.dbsize() == 0
    hello = r.execute_command("HELLO", protocol)
    if isinstance(hello, list):
        hello = dict(zip(hello[::2], hello[1::2]))
    assert hello["proto"] == protocol, hello
    # strings
    assert r.set("s", "v") is True
    assert r.get("s") == "v"
    assert r.set("s", "w", nx=True) is None
    assert r.set("s", "w", xx=True, get=True) == "v"
    assert r.set("t", "1", ex=100) and 0 < r.ttl("t") <= 100
    assert r.set("t", "2", px=100000, keepttl=False) and 0 < r.pttl("t") <= 100000
    assert r.set("t", "3", keepttl=True) and r.ttl("t") > 0
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "nope") == ["1", "2", None]
    assert r.setnx("a", "x") is False and r.setnx("c", "x") is True
    assert r.getdel("c") == "x" and r.exists("c") == 0
    assert r.getex("a", ex=50) == "1" and r.ttl("a") > 0
    assert r.getex("a", persist=True) == "1" and r.ttl("a") == -1
    assert r.incr("n") == 1 and r.incrby("n", 10) == 11 and r.decr("n") == 10 and r.decrby("n", 5) == 5
    assert float(r.incrbyfloat("f", 2.5)) == 2.5
    assert r.append("s", "xyz") == 4 and r.strlen("s") == 4
    assert r.getrange("s", 1, 2) == "xy"
    try:
        r.incr("s")
        raise AssertionError("INCR on a non-integer must fail")
    except redis.ResponseError as e:
        assert "not an integer" in str(e)
    # keys
    assert r.exists("a", "b", "zz") == 2
    assert r.type("a") == "string"
    assert r.expire("a", 100) is True and r.pexpire("b", 100000) is True
    assert r.expireat("a", int(time.time()) + 200) is True
    assert r.execute_command("PEXPIREAT", "b", int(time.time() * 1000) + 200000) == 1
    assert r.persist("a") is True and r.ttl("a") == -1 and r.ttl("zz") == -2
    assert sorted(r.keys("*")) == sorted(["s", "t", "a", "b", "n", "f"])
    seen, cursor = set(), 0
    while True:
        cursor, keys = r.scan(cursor, match="*", count=2)
        seen.update(keys)
        if cursor == 0:
            break
    assert seen == {"s", "t", "a", "b", "n", "f"}, seen
    assert r.rename("a", "a2") is True and r.get("a2") == "1"
    assert r.delete("a2", "zz") == 1 and r.unlink("b") == 1
    # hashes
    assert r.hset("h", mapping={"f1": "1", "f2": "2"}) == 2
    assert r.hget("h", "f1") == "1" and r.hmget("h", ["f1", "x"]) == ["1", None]
    assert r.hgetall("h") == {"f1": "1", "f2": "2"}
    assert sorted(r.hkeys("h")) == ["f1", "f2"] and sorted(r.hvals("h")) == ["1", "2"]
    assert r.hlen("h") == 2 and r.hexists("h", "f1") is True
    assert r.hincrby("h", "f1", 5) == 6
    assert r.hdel("h", "f1", "nope") == 1
    # lists
    assert r.lpush("l", "a", "b") == 2 and r.rpush("l", "c") == 3
    assert r.lrange("l", 0, -1) == ["b", "a", "c"] and r.llen("l") == 3 and r.lindex("l", -1) == "c"
    assert r.lpop("l") == "b" and r.rpop("l") == "c"
    r.rpush("l", "x", "a", "x")
    assert r.lrem("l", 0, "x") == 2 and r.ltrim("l", 0, 0) is True and r.lrange("l", 0, -1) == ["a"]
    assert r.lpop("l", 2) == ["a"] and r.exists("l") == 0
    # sets
    assert r.sadd("s1", "a", "b", "c") == 3 and r.sadd("s2", "b", "c", "d") == 3
    assert r.srem("s1", "c") == 1 and r.smembers("s1") == {"a", "b"}
    assert r.sismember("s1", "a") in (True, 1) and r.scard("s1") == 2
    assert r.sinter("s1", "s2") == {"b"} and r.sunion("s1", "s2") == {"a", "b", "c", "d"}
    # sorted sets
    assert r.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert r.zrem("z", "c") == 1 and r.zscore("z", "b") == 2.0
    assert r.zincrby("z", 5, "a") == 6.0 and r.zcard("z") == 2
    assert r.zrange("z", 0, -1) == ["b", "a"]
    assert r.zrange("z", 0, -1, withscores=True) in ([("b", 2.0), ("a", 6.0)], [["b", 2.0], ["a", 6.0]])
    assert r.zrangebyscore("z", 1, 3) == ["b"] and r.zrevrange("z", 0, 0) == ["a"] and r.zrank("z", "a") == 1
    # pub/sub (publish without subscribers) and transactions
    assert r.publish("nobody", "x") == 0
    assert r.pubsub_channels() == [] and r.pubsub_numsub("nobody") == [("nobody", 0)]
    p = r.pipeline(transaction=True)
    p.set("tx", "1").incr("tx").get("tx")
    assert p.execute() == [True, 2, "2"]
    # errors come back with Redis's text
    r.set("str", "x")
    try:
        r.lpush("str", "a")
        raise AssertionError("LPUSH on a string must fail")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    assert r.flushdb() is True and r.dbsize() == 0
    r.close()


def main():
    port = int(sys.argv[1])
    password = sys.argv[sys.argv.index("--password") + 1] if "--password" in sys.argv else None
    for protocol in (2, 3):
        check(port, protocol, password)
        print("redis-py protocol %d: ok" % protocol)


if __name__ == "__main__":
    main()
