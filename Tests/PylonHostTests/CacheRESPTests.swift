import Foundation
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// CacheRESP (issue 6), black-box: the release `pylon-host` with the real plugins folder,
/// its cache plugin on a free loopback port, driven by real clients — `redis-cli`, the
/// Python `redis` client, raw RESP — and compared reply by reply with a real
/// `redis-server` started by the test. Waits are bounded; nothing asserts on timing.
/// Build first: `make build` (or `swift build -c release && cp .build/release/libPylon*.so plugins/`).
@Suite("CacheRESP: Redis-compatible cache and pub/sub (black-box, real clients and real Redis)")
struct CacheRESPTests {
    static let admin = HostProcess.adminToken

    @Test("redis-cli: the commands of every group, with Redis's replies and errors")
    func redisCLI() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let cases: [([String], String)] = [
            (["PING"], "PONG"), (["ECHO", "hi"], "hi"), (["SELECT", "0"], "OK"), (["SELECT", "1"], "ERR DB index is out of range"),
            (["CLIENT", "SETNAME", "cli"], "OK"), (["DBSIZE"], "0"), (["FLUSHDB"], "OK"), (["FLUSHALL"], "OK"),
            (["SET", "k", "v", "EX", "100"], "OK"), (["GET", "k"], "v"), (["TTL", "k"], "1...100"), (["PERSIST", "k"], "1"), (["TTL", "k"], "-1"),
            (["SET", "k", "w", "NX"], ""), (["SET", "k", "w", "XX", "GET"], "v"), (["SET", "k", "x", "KEEPTTL"], "OK"),
            (["MSET", "a", "1", "b", "2"], "OK"), (["MGET", "a", "b", "c"], "1\n2"), (["SETNX", "a", "9"], "0"),
            (["GETDEL", "b"], "2"), (["GETEX", "a", "PX", "100000"], "1"), (["INCR", "a"], "2"), (["INCRBY", "a", "5"], "7"),
            (["DECR", "a"], "6"), (["DECRBY", "a", "10"], "-4"), (["INCRBYFLOAT", "f", "10.5"], "10.5"), (["INCRBYFLOAT", "f", "0.1"], "10.6"),
            (["APPEND", "k", "yz"], "3"), (["STRLEN", "k"], "3"), (["GETRANGE", "k", "1", "-1"], "yz"),
            (["INCR", "k"], "ERR value is not an integer or out of range"),
            (["EXISTS", "a", "k", "nope"], "2"), (["TYPE", "a"], "string"), (["EXPIRE", "a", "50"], "1"), (["PEXPIRE", "a", "50000"], "1"),
            (["EXPIREAT", "a", "9999999999"], "1"), (["PEXPIREAT", "a", "9999999999000"], "1"), (["PTTL", "nope"], "-2"),
            (["RENAME", "a", "a2"], "OK"), (["RENAME", "nope", "x"], "ERR no such key"), (["DEL", "a2"], "1"), (["UNLINK", "f"], "1"),
            (["KEYS", "*"], "k"), (["SCAN", "0", "MATCH", "k*"], "0\nk"),
            (["HSET", "h", "f1", "1", "f2", "2"], "2"), (["HGET", "h", "f1"], "1"), (["HMGET", "h", "f1", "x"], "1"),
            (["HINCRBY", "h", "f1", "4"], "5"), (["HLEN", "h"], "2"), (["HEXISTS", "h", "f2"], "1"), (["HDEL", "h", "f2"], "1"),
            (["HGETALL", "h"], "f1\n5"), (["HKEYS", "h"], "f1"), (["HVALS", "h"], "5"),
            (["LPUSH", "l", "a", "b"], "2"), (["RPUSH", "l", "c"], "3"), (["LRANGE", "l", "0", "-1"], "b\na\nc"), (["LLEN", "l"], "3"),
            (["LINDEX", "l", "1"], "a"), (["LREM", "l", "1", "a"], "1"), (["LTRIM", "l", "0", "0"], "OK"), (["LPOP", "l"], "b"), (["RPOP", "l"], ""),
            (["SADD", "s", "x", "y"], "2"), (["SREM", "s", "y"], "1"), (["SMEMBERS", "s"], "x"), (["SISMEMBER", "s", "x"], "1"),
            (["SCARD", "s"], "1"), (["SADD", "s2", "x", "z"], "2"), (["SINTER", "s", "s2"], "x"), (["SUNION", "s", "s"], "x"),
            (["ZADD", "z", "1", "a", "2", "b"], "2"), (["ZINCRBY", "z", "2.5", "a"], "3.5"), (["ZSCORE", "z", "a"], "3.5"), (["ZCARD", "z"], "2"),
            (["ZRANGE", "z", "0", "-1", "WITHSCORES"], "b\n2\na\n3.5"), (["ZRANGEBYSCORE", "z", "(2", "+inf"], "a"),
            (["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "9223372036854775807"], "a"),
            (["ZREVRANGE", "z", "0", "0"], "a"), (["ZRANK", "z", "a"], "1"), (["ZREM", "z", "a"], "1"),
            (["LPUSH", "k", "x"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
            (["PUBLISH", "ch", "m"], "0"), (["PUBSUB", "NUMSUB", "ch"], "ch\n0"), (["PUBSUB", "CHANNELS"], ""),
            (["GET"], "ERR wrong number of arguments for 'get' command"),
            (["NOPE", "x"], "ERR unknown command 'NOPE', with args beginning with: 'x' "),
        ]
        for (args, expected) in cases {
            let out = try await CacheFixtures.cli(port, args)
            if expected == "1...100" {
                // A TTL counts down while the test runs; only its range is checked.
                #expect((1...100).contains(Int(out) ?? -1), "redis-cli \(args.joined(separator: " ")): got \(out)")
                continue
            }
            #expect(out == expected, "redis-cli \(args.joined(separator: " ")): got \(out.debugDescription), expected \(expected.debugDescription)")
        }
        // Connection and server introspection that redis-cli relies on.
        #expect(Int(try await CacheFixtures.cli(port, ["COMMAND", "COUNT"])) ?? 0 > 80)
        #expect(try await CacheFixtures.cli(port, ["COMMAND", "DOCS", "get"]).contains("summary"))
        #expect(try await CacheFixtures.cli(port, ["INFO", "server"]).contains("redis_version:"))
        #expect(Int(try await CacheFixtures.cli(port, ["CLIENT", "ID"])) != nil)
        #expect(try await CacheFixtures.cli(port, ["CLIENT", "GETNAME"]) == "")
        #expect(try await CacheFixtures.cli(port, ["-3", "HELLO", "3"]).contains("proto"))
        // MULTI/EXEC and QUIT through one redis-cli session (commands on stdin; redis-cli
        // prints QUIT's OK as an empty line).
        let r = try await TestCommand.run("/bin/sh", ["-c", "printf 'MULTI\\nSET tx 1\\nINCR tx\\nEXEC\\nDISCARD\\nQUIT\\n' | redis-cli -p \(port)"])
        #expect(r.stdout == "OK\nQUEUED\nQUEUED\nOK\n2\nERR DISCARD without MULTI\n\n", "MULTI session: \(r.stdout.debugDescription) \(r.stderr)")
    }

    @Test("Python redis client: every command, RESP2 and RESP3")
    func pythonClient() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let out = try await CacheFixtures.python("redis_py_check.py", [String(port)])
        #expect(out.contains("protocol 2: ok") && out.contains("protocol 3: ok"), "\(out)")
    }

    @Test("Differential: thousands of seeded commands (all types, expiries, errors, wrong types, MULTI) give the same replies as redis-server, RESP2 and RESP3")
    func differentialAgainstRedis() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let redis = try await RedisServer()
        defer { redis.stop() }
        for (seed, resp) in [(11, "2"), (12, "3"), (13, "2")] {
            let out = try await CacheFixtures.python("differential.py", [String(port), String(redis.port), "--seed", String(seed),
                                                                        "--count", "3000", "--resp", resp])
            #expect(out.contains("mismatches=0"), "\(out)")
        }
    }

    @Test("Pub/sub: three clients, patterns, RESP3 pushes, the redis client's PubSub; RESP and HTTP publishes reach a WebSocket subscriber")
    func pubSub() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        try await CacheFixtures.python("pubsub_check.py", [String(port)])

        let ws = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "topic subscriber")
        let nonce = UUID().uuidString
        try ws.sendText(#"{"type":"topic","topic":"ready","data":"\#(nonce)"}"#)
        try await ws.waitForJSON("its own ready relay") { $0["type"].string == "topic" && $0["data"].string == nonce }

        let reply = try await respExchange(port, "*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$9\r\nfrom-resp\r\n") { $0.hasSuffix("\r\n") }
        #expect(reply == ":0\r\n", "no RESP subscriber: \(reply)")
        let m = try await ws.waitForJSON("the RESP publish as a topic frame") { $0["topic"].string == "news" && $0["data"].string == "from-resp" }
        #expect(m["type"].string == "topic" && m["from"].string == "pubsub", "\(String(describing: m))")

        let r = try await host.request("POST", "/api/pubsub/publish", json: #"{"channel":"news","message":"from-http"}"#, token: Self.admin)
        #expect(r.status == 200 && r.json["ok"].bool == true && r.json["subscribers"].int == 0, "\(r.body)")
        try await ws.waitForJSON("the HTTP publish as a topic frame") { $0["topic"].string == "news" && $0["data"].string == "from-http" }

        let h = try await host.request("GET", "/api/pubsub/history/news?limit=1", token: Self.admin)
        #expect(h.status == 200 && (h.json["result"] as? [Any])?.count == 1 && h.json["result"][0]["message"].string == "from-http", "\(h.body)")
    }

    @Test("HTTP /api/cache and /api/pubsub: Pylon's shapes over the same store, admin-only, Redis errors as 400")
    func httpRoutes() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        func cmd(_ body: String) async throws -> (status: Int, body: String, json: Any?) {
            try await host.request("POST", "/api/cache", json: body, token: Self.admin)
        }
        #expect(try await cmd(#"{"cmd":"set","key":"greeting","value":"hello","ttl":86400}"#).json["result"].string == "OK")
        #expect(try await CacheFixtures.cli(port, ["GET", "greeting"]) == "hello", "HTTP and RESP share one store")
        // A day: on a loaded machine seconds pass between the two calls; the TTL is what is checked.
        #expect(try await cmd(#"{"cmd":"TTL","key":"greeting"}"#).json["result"].int ?? 0 > 80_000)
        #expect(try await cmd(#"{"cmd":"INCRBY","key":"n","amount":5}"#).json["result"].int == 5)
        #expect(try await cmd(#"{"cmd":"EXISTS","key":"n"}"#).json["result"].bool == true)
        #expect(try await cmd(#"{"cmd":"MSET","pairs":{"a":"1","b":2}}"#).json["result"].string == "OK")
        let mget = try await cmd(#"{"cmd":"MGET","keys":["a","b","zz"]}"#)
        #expect(mget.body.contains(#""result":["1","2",null]"#), "\(mget.body)")
        #expect(try await cmd(#"{"cmd":"HSET","key":"h","field":"f","value":"v"}"#).json["result"].int == 1)
        #expect(try await cmd(#"{"cmd":"HGETALL","key":"h"}"#).json["result"]["f"].string == "v")
        #expect(try await cmd(#"{"cmd":"ZADD","key":"z","score":2.5,"member":"m"}"#).json["result"].int == 1)
        let zr = try await cmd(#"{"cmd":"ZRANGE","key":"z"}"#)
        #expect(zr.json["result"][0]["member"].string == "m" && zr.json["result"][0]["score"].double == 2.5, "\(zr.body)")
        #expect(try await cmd(#"{"cmd":"LPUSH","key":"l","value":"x"}"#).json["result"].int == 1)
        #expect(try await cmd(#"{"cmd":"SADD","key":"s","member":"x"}"#).json["result"].int == 1)
        #expect(try await cmd(#"{"cmd":"SISMEMBER","key":"s","member":"x"}"#).json["result"].bool == true)
        #expect((try await cmd(#"{"cmd":"KEYS"}"#).json["result"] as? [Any])?.count == 8)
        #expect(try await cmd(#"{"cmd":"DBSIZE"}"#).json["result"].int == 8)
        #expect(try await cmd(#"{"cmd":"INFO"}"#).json["result"]["redis_version"].string != nil)
        #expect(try await cmd(#"{"cmd":"CLEANUP"}"#).json["result"].int == 0)

        let wrong = try await cmd(#"{"cmd":"LPUSH","key":"greeting","value":"x"}"#)
        #expect(wrong.status == 400 && wrong.json["ok"].bool == false && wrong.json["error"]["code"].string == "CACHE_WRONGTYPE", "\(wrong.body)")
        let unknown = try await cmd(#"{"cmd":"SHUTDOWN"}"#)
        #expect(unknown.status == 400 && unknown.json["error"]["code"].string == "UNKNOWN_CACHE_COMMAND", "\(unknown.body)")
        let missing = try await cmd(#"{"cmd":"GET"}"#)
        #expect(missing.status == 400 && missing.json["error"]["code"].string == "MISSING_FIELD", "\(missing.body)")

        let got = try await host.request("GET", "/api/cache/greeting", token: Self.admin)
        #expect(got.status == 200 && got.json["result"].string == "hello", "\(got.body)")
        #expect(try await host.request("GET", "/api/cache/none", token: Self.admin).status == 404)
        #expect(try await host.request("DELETE", "/api/cache/greeting", token: Self.admin).status == 200)
        let gone = try await host.request("DELETE", "/api/cache/greeting", token: Self.admin)
        #expect(gone.status == 404 && gone.json["ok"].bool == false)

        // Pub/sub: channels with their RESP subscriber counts; missing fields.
        let sub = try TestSocket.connect(port: port)
        defer { sub.close() }
        try sub.send("*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nalpha\r\n")
        try await eventuallyAsync("the RESP subscriber is registered") {
            let r = try? await host.request("GET", "/api/pubsub/channels", token: Self.admin)
            return r?.body.contains(#"{"channel":"alpha","subscribers":1}"#) == true ? true : nil
        }
        let pub = try await host.request("POST", "/api/pubsub/publish", json: #"{"channel":"alpha","message":"m"}"#, token: Self.admin)
        #expect(pub.json["subscribers"].int == 1, "\(pub.body)")
        #expect(try await host.request("POST", "/api/pubsub/publish", json: #"{"message":"m"}"#, token: Self.admin).json["error"]["code"].string == "MISSING_CHANNEL")
        #expect(try await host.request("POST", "/api/pubsub/publish", json: #"{"channel":"c"}"#, token: Self.admin).json["error"]["code"].string == "MISSING_MESSAGE")

        // Admin only, even in --dev.
        for (method, path) in [("POST", "/api/cache"), ("GET", "/api/cache/x"), ("DELETE", "/api/cache/x"),
                               ("POST", "/api/pubsub/publish"), ("GET", "/api/pubsub/channels"), ("GET", "/api/pubsub/history/x")] {
            let r = try await host.request(method, path, json: method == "POST" ? "{}" : nil)
            #expect(r.status == 403 && r.json["error"]["code"].string == "FORBIDDEN", "\(method) \(path) without admin: \(r.status) \(r.body)")
        }
    }

    @Test("A cache key in the path is percent-decoded once: GET and DELETE reach keys with a space, non-ASCII, a slash or a %; broken encoding is 400 INVALID_PATH")
    func encodedKeys() async throws {
        let (host, _) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let cases: [(key: String, path: String)] = [
            ("user:1 name", "user:1%20name"), ("café", "caf%C3%A9"), ("a/b", "a%2Fb"), ("100%", "100%25"), ("pct%41", "pct%2541"),
        ]
        for c in cases {
            let set = try await host.request("POST", "/api/cache", json: #"{"cmd":"SET","key":"\#(c.key)","value":"v"}"#, token: Self.admin)
            #expect(set.json["result"].string == "OK", "\(c.key): \(set.body)")
            let got = try await host.request("GET", "/api/cache/" + c.path, token: Self.admin)
            #expect(got.status == 200 && got.json["result"].string == "v", "GET \(c.path): \(got.status) \(got.body)")
            #expect(try await host.request("DELETE", "/api/cache/" + c.path, token: Self.admin).status == 200, "DELETE \(c.path)")
            #expect(try await host.request("GET", "/api/cache/" + c.path, token: Self.admin).status == 404, "\(c.key) is gone")
        }
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        let bad = ["GET /api/cache/%zz", "DELETE /api/cache/a%G1", "GET /api/pubsub/history/%E2%82"]
        try socket.send(bad.map { "\($0) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(Self.admin)\r\n\r\n" }.joined())
        let answers = try await RequestPathTests.read(socket, count: bad.count).answers
        for (request, a) in zip(bad, answers) {
            #expect(a.status == 400 && a.body.contains(#""code":"INVALID_PATH""#), "\(request): \(a.status) \(a.body)")
        }
    }

    @Test("Bad input: malformed frames, oversized bulk and multibulk, half-sent commands and a random-bytes fuzz loop; only the offender is disconnected")
    func badInput() async throws {
        let (host, port) = try await HostProcess.startWithCache(
            cacheConfig: #""max_bulk_bytes": 65536, "max_multibulk": 1000, "partial_timeout_ms": 300"#)
        defer { host.stop() }
        // A client that stays connected throughout, on its own socket.
        let steady = try TestSocket.connect(port: port)
        defer { steady.close() }
        let out = try await CacheFixtures.python("badinput_check.py", [String(port), "--max-bulk", "65536", "--max-multibulk", "1000",
                                                                       "--seed", "7", "--fuzz", "400", "--others", "1"])
        #expect(out.contains("ok"), "\(out)")
        let pong = try await onThread { () throws -> String in
            try steady.send("PING\r\n")
            if case let .bytes(b) = steady.receive() { return String(decoding: b, as: UTF8.self) }
            return ""
        }
        #expect(pong == "+PONG\r\n", "the steady client is still served: \(pong)")
        #expect(!host.hasExited)
        let health = try await host.request("GET", "/health")
        #expect(health.status == 200)
    }

    /// A web page can send `fetch("http://127.0.0.1:6380", {method: "POST", body})` to a
    /// cache on the visitor's machine; the body's lines would run as commands. As Redis
    /// does, a `POST` or `Host:` line closes the connection before anything runs.
    @Test("An HTTP request on the RESP port (a web page's cross-protocol attack): closed unanswered, nothing in its body runs")
    func httpRequestIsAnAttack() async throws {
        let (host, port) = try await HostProcess.startWithCache(cacheConfig: "")
        defer { host.stop() }
        for first in ["POST / HTTP/1.1\r\n", "host: 127.0.0.1\r\n"] {
            let request = first + "Host: 127.0.0.1:\(port)\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\nSET injected yes\r\nPUBLISH chat hello\r\n"
            let got = try await respExchange(port, request) { _ in false }
            #expect(got.isEmpty, "\(first): closed without a reply, got \(got)")
        }
        let check = try await respExchange(port, "EXISTS injected\r\n") { $0.hasSuffix("\r\n") }
        #expect(check == ":0\r\n", "nothing of the body ran: \(check)")
        #expect(host.log.contains("cross-protocol"), "the attempt is logged")
    }

    @Test("No cache plugin selected: /api/cache and /api/pubsub answer 501 CAPABILITY_UNAVAILABLE")
    func stubbedWithoutPlugin() async throws {
        let manifest = """
        {"manifest_version": 1, "name": "no-cache", "version": "0.1.0", "entities": [], "routes": [], "policies": [],
         "plugins": {"cache": {"use": "none"}}}
        """
        let host = try await HostProcess.start(manifest: manifest, dev: true)
        defer { host.stop() }
        for (method, path) in [("POST", "/api/cache"), ("GET", "/api/cache/k"), ("POST", "/api/pubsub/publish"), ("GET", "/api/pubsub/channels")] {
            let r = try await host.request(method, path, json: method == "POST" ? "{}" : nil, token: Self.admin)
            #expect(r.status == 501 && r.json["error"]["code"].string == "CAPABILITY_UNAVAILABLE", "\(method) \(path): \(r.status) \(r.body)")
            #expect(r.body.contains("pylon.cache/1") && r.body.contains("libPylonCacheRESP.so"), "\(r.body)")
        }
        #expect(host.log.contains("pylon.cache/1: stub"))
    }

    @Test("requirepass: nothing but AUTH/HELLO before authenticating; then every command works")
    func requirePass() async throws {
        let (host, port) = try await HostProcess.startWithCache(env: ["PYLON_CACHE_PASSWORD": "s3cret"])
        defer { host.stop() }
        let noauth = try await respExchange(port, "GET k\r\n") { $0.hasSuffix("\r\n") }
        #expect(noauth == "-NOAUTH Authentication required.\r\n")
        let wrong = try await respExchange(port, "AUTH nope\r\n") { $0.hasSuffix("\r\n") }
        #expect(wrong == "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        let hello = try await respExchange(port, "HELLO 3\r\n") { $0.hasSuffix("\r\n") }
        #expect(hello.hasPrefix("-NOAUTH HELLO must be called with the client already authenticated"), "\(hello)")
        let ok = try await respExchange(port, "AUTH s3cret\r\nSET k v\r\nGET k\r\n") { $0.hasSuffix("$1\r\nv\r\n") }
        #expect(ok == "+OK\r\n+OK\r\n$1\r\nv\r\n")
        let helloAuth = try await respExchange(port, "HELLO 3 AUTH default s3cret\r\nGET k\r\n") { $0.hasSuffix("$1\r\nv\r\n") }
        #expect(helloAuth.hasPrefix("%7\r\n"), "\(helloAuth)")
        try await CacheFixtures.python("redis_py_check.py", [String(port), "--password", "s3cret"])
    }

    @Test("Protected mode, as Redis: bound beyond loopback without a password, a client not on loopback gets redis-server's own -DENIED reply and is disconnected, loopback clients are served and the start-up log warns; a password, protected_mode: false or PYLON_CACHE_PROTECTED_MODE=0 serves everyone",
          .enabled(if: nonLoopbackIPv4Address() != nil, "needs an IPv4 address of this machine besides loopback"))
    func protectedMode() async throws {
        let remote = try #require(nonLoopbackIPv4Address())
        let redis = try await RedisServer(bind: ["127.0.0.1", remote])
        defer { redis.stop() }
        let expected = try await Self.firstReply(redis.port, from: remote)
        #expect(expected.closed && expected.reply.hasPrefix("-DENIED Redis is running in protected mode"), "redis-server: \(expected)")

        let (host, port) = try await HostProcess.startWithCache(cacheConfig: #""bind": "0.0.0.0""#)
        defer { host.stop() }
        let refused = try await Self.firstReply(port, from: remote)
        #expect(refused.reply == expected.reply, "the same bytes as redis-server: \(refused.reply.debugDescription)")
        #expect(refused.closed, "the refused connection is closed")
        #expect(try await CacheFixtures.cli(port, ["PING"]) == "PONG", "a loopback client is served")
        #expect(try await CacheFixtures.cli(port, ["INFO", "stats"]).contains("rejected_connections:1"))
        #expect(host.log.contains("protected mode: 0.0.0.0:\(port) has no password"), "\(host.log)")

        // Explicitly off, from the manifest and from the environment: a remote client is served.
        let (manifestOff, manifestOffPort) = try await HostProcess.startWithCache(cacheConfig: "\"bind\": \"\(remote)\", \"protected_mode\": false")
        defer { manifestOff.stop() }
        let (envOff, envOffPort) = try await HostProcess.startWithCache(cacheConfig: "\"bind\": \"\(remote)\"", env: ["PYLON_CACHE_PROTECTED_MODE": "0"])
        defer { envOff.stop() }
        for (off, offPort) in [(manifestOff, manifestOffPort), (envOff, envOffPort)] {
            let served = try await Self.firstReply(offPort, from: remote, sending: "PING\r\n")
            #expect(served.reply == "+PONG\r\n" && !served.closed, "protected mode off: \(served)")
            #expect(off.log.contains("protected mode is off and \(remote):\(offPort) has no password"), "\(off.log)")
        }

        // A password: remote clients are served and must authenticate; nothing to warn about.
        let (locked, lockedPort) = try await HostProcess.startWithCache(cacheConfig: "\"bind\": \"\(remote)\"", env: ["PYLON_CACHE_PASSWORD": "s3cret"])
        defer { locked.stop() }
        let noauth = try await Self.firstReply(lockedPort, from: remote, sending: "GET k\r\n")
        #expect(noauth.reply == "-NOAUTH Authentication required.\r\n" && !noauth.closed, "\(noauth)")
        let authed = try await respExchange(lockedPort, address: remote, "AUTH s3cret\r\nPING\r\n") { $0.hasSuffix("+PONG\r\n") }
        #expect(authed == "+OK\r\n+PONG\r\n")
        #expect(!locked.log.contains("protected mode"), "\(locked.log)")
    }

    @Test("PYLON_CACHE_PROTECTED_MODE: 0/1 (and no/yes) become plugins.cache.protected_mode; anything else is CONFIG_INVALID")
    func protectedModeSetting() throws {
        for (text, on) in [("0", false), ("no", false), ("OFF", false), ("1", true), ("yes", true)] {
            let c = try HostConfig.fromEnvironment(["PYLON_CACHE_PROTECTED_MODE": text])
            #expect(c.cacheOverrides.first { $0.0 == "protected_mode" }?.1 == .bool(on), "\(text)")
        }
        #expect(try HostConfig.fromEnvironment([:]).cacheOverrides.isEmpty, "unset: the plugin's default (on)")
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_CACHE_PROTECTED_MODE": "maybe"]) }
    }

    @Test("RESP clients share the open-file budget: at a low limit the listener serves its share, later clients get Redis' max-clients error, and the host and its served clients carry on")
    func clientsWithinTheOpenFileLimit() async throws {
        // 200 descriptors: the RESP listener's share (a tenth, at least 16) of what is left
        // after the host's reserve — far below maxclients' 10,000.
        let (host, port) = try await HostProcess.startWithCache(launcher: ["/usr/bin/prlimit", "--nofile=200:200", "--"])
        defer { host.stop() }
        let replies = try await onThread { () -> [String] in
            var held: [TestSocket] = []
            defer { for s in held { s.close() } }
            var replies: [String] = []
            for _ in 0..<120 {
                let s = try TestSocket.connect(port: port)
                held.append(s)
                try s.send("PING\r\n")
                // A refused client reads the error, or a reset when its PING arrived first.
                guard case let .bytes(b) = s.receive() else { replies.append("(closed)"); continue }
                replies.append(String(decoding: b, as: UTF8.self))
            }
            // The first client is still served after the refusals, and reports the limit.
            try held[0].send("INFO clients\r\n")
            var info = [UInt8]()
            while !String(decoding: info, as: UTF8.self).contains("maxclients:") || info.last != 10 {
                guard case let .bytes(b) = held[0].receive() else { break }
                info += b
            }
            replies.append(String(decoding: info, as: UTF8.self))
            return replies
        }
        let served = replies.dropLast().filter { $0 == "+PONG\r\n" }.count
        #expect(served == 16, "served \(served) of 120: \(Set(replies))")
        let refusals = Set(replies.dropLast().filter { $0 != "+PONG\r\n" })
        #expect(refusals.isSubset(of: ["-ERR max number of clients reached\r\n", "(closed)"]), "\(refusals)")
        let limit = replies.last?.split(separator: "\r\n").first { $0.hasPrefix("maxclients:") }.flatMap { Int($0.dropFirst(11)) }
        #expect(limit.map { $0 == served } == true, "INFO: \(replies.last ?? "")")
        #expect(host.log.contains("maxclients 10000 is more than the open-file limit allows"), "\(host.log)")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    /// Connects to `port` on this machine's `address`, sends `sending`, and reads the first
    /// reply line; then checks whether the server closed the connection without waiting on
    /// it (a PING on a connection still open is answered, on a closed one it is not).
    static func firstReply(_ port: Int, from address: String, sending: String = "") async throws -> (reply: String, closed: Bool) {
        try await onThread {
            let s = try TestSocket.connect(port: port, address: address)
            defer { s.close() }
            if !sending.isEmpty { try s.send(sending) }
            var got = [UInt8]()
            while !got.suffix(2).elementsEqual([13, 10]) {
                switch s.receive() {
                case let .bytes(b): got += b
                case .end, .failed: return (String(decoding: got, as: UTF8.self), true)
                }
            }
            let reply = String(decoding: got, as: UTF8.self)
            try? s.send("PING\r\n")
            guard case .bytes = s.receive() else { return (reply, true) }
            return (reply, false)
        }
    }

    @Test("maxmemory: approximate-LRU eviction keeps memory under the limit and keeps recent keys; noeviction answers OOM; active expiry removes keys nobody reads")
    func memoryAndExpiry() async throws {
        let (host, port) = try await HostProcess.startWithCache(cacheConfig: #""maxmemory": "1mb""#)
        defer { host.stop() }
        let value = String(repeating: "x", count: 1000)
        var pipeline = ""
        for i in 0..<5000 { pipeline += "*3\r\n$3\r\nSET\r\n$\(String(i).count + 4)\r\nkey:\(i)\r\n$1000\r\n\(value)\r\n" }
        pipeline += "PING\r\n"
        let replies = try await respExchange(port, pipeline) { $0.hasSuffix("+PONG\r\n") }
        #expect(!replies.contains("-"), "every SET succeeds under allkeys-lru")
        let size = Int(try await CacheFixtures.cli(port, ["DBSIZE"])) ?? 0
        #expect(size > 100 && size < 5000, "evicted down to the limit: \(size) keys")
        let info = try await CacheFixtures.cli(port, ["INFO", "memory"])
        let used = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory:") }.flatMap { Int($0.dropFirst(12).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? -1
        // Eviction runs before each write (as in Redis), so the last write may overshoot by its own size.
        #expect(used > 0 && used <= 1024 * 1024 + 2048, "used_memory \(used) within maxmemory plus one write")
        #expect(try await CacheFixtures.cli(port, ["EXISTS", "key:4999"]) == "1", "the newest key survives")
        #expect(try await CacheFixtures.cli(port, ["INFO", "stats"]).contains("evicted_keys:"))

        // Active expiry: keys with a short TTL go away although nobody touches them.
        try await CacheFixtures.cli(port, ["FLUSHALL"])
        var batch = ""
        for i in 0..<200 { batch += "SET tmp:\(i) v PX 50\r\n" }
        batch += "PING\r\n"
        _ = try await respExchange(port, batch) { $0.hasSuffix("+PONG\r\n") }
        try await eventuallyAsync("active expiry to empty the keyspace (DBSIZE does not expire lazily)") {
            let n = try? await CacheFixtures.cli(port, ["DBSIZE"])
            return n == "0" ? true : nil
        }

        let (strict, strictPort) = try await HostProcess.startWithCache(cacheConfig: #""maxmemory": 2048, "maxmemory_policy": "noeviction""#)
        defer { strict.stop() }
        var oom = ""
        for i in 0..<20 {
            oom = try await CacheFixtures.cli(strictPort, ["SET", "k\(i)", value])
            if oom.hasPrefix("OOM") { break }
        }
        #expect(oom == "OOM command not allowed when used memory > 'maxmemory'.")
        #expect(try await CacheFixtures.cli(strictPort, ["DEL", "k0"]) == "1", "deletes still work when full")
    }

    @Test("Snapshot: saved on shutdown and reloaded on start with TTLs; a corrupt snapshot is reported and set aside, never a crash")
    func snapshotPersistence() async throws {
        let (host, port) = try await HostProcess.startWithCache(cacheConfig: #""snapshot": true, "snapshot_interval_secs": 3600"#)
        defer { host.stop() }
        for args in [["SET", "s", "v"], ["SET", "t", "x", "EX", "86400"], ["INCR", "n"], ["RPUSH", "l", "a", "b"], ["HSET", "h", "f", "v"],
                     ["SADD", "set", "m"], ["ZADD", "z", "1.5", "m"], ["SET", "gone", "x", "PX", "1"]] {
            _ = try await CacheFixtures.cli(port, args)
        }
        await host.stopAndWait()
        let file = host.directory.appendingPathComponent("cache.snapshot").path
        #expect(FileManager.default.fileExists(atPath: file), "snapshot written on shutdown at \(file)")
        try await host.restart()
        #expect(try await CacheFixtures.cli(port, ["GET", "s"]) == "v")
        #expect(Int(try await CacheFixtures.cli(port, ["TTL", "t"])) ?? 0 > 80_000, "a TTL of a day survives a slow restart")
        #expect(try await CacheFixtures.cli(port, ["GET", "n"]) == "1")
        #expect(try await CacheFixtures.cli(port, ["LRANGE", "l", "0", "-1"]) == "a\nb")
        #expect(try await CacheFixtures.cli(port, ["HGET", "h", "f"]) == "v")
        #expect(try await CacheFixtures.cli(port, ["SMEMBERS", "set"]) == "m")
        #expect(try await CacheFixtures.cli(port, ["ZSCORE", "z", "m"]) == "1.5")
        #expect(try await CacheFixtures.cli(port, ["EXISTS", "gone"]) == "0")

        await host.stopAndWait()
        try Data("PYLONCACHE\u{1}garbage that is not a snapshot".utf8).write(to: URL(fileURLWithPath: file))
        try await host.restart()
        #expect(host.log.contains("is corrupt"), "the corrupt snapshot is reported")
        let aside = try FileManager.default.contentsOfDirectory(atPath: host.directory.path).filter { $0.hasPrefix("cache.snapshot.corrupt-") }
        #expect(aside.count == 1, "set aside: \(aside)")
        #expect(try await CacheFixtures.cli(port, ["DBSIZE"]) == "0")
        #expect(try await CacheFixtures.cli(port, ["SET", "after", "1"]) == "OK")
    }
}

/// The host's pure parts of the cache integration: RESP3 decoding of plugin replies and
/// Pylon's JSON command mapping.
@Suite("CacheRESP host side: RESP3 replies and the JSON command mapping")
struct CacheRESPHostUnitTests {
    @Test("RESP3 values decode, nest, and map to JSON; garbage and trailing bytes are refused")
    func decode() throws {
        let reply = Array("%2\r\n$1\r\na\r\n*3\r\n:1\r\n,2.5\r\n_\r\n+s\r\n~1\r\n#t\r\n".utf8)
        let v = try RESPValue.decode(reply)
        #expect(v == .map([(.bulk(Array("a".utf8)), .array([.integer(1), .double(2.5), .null])), (.simple("s"), .set([.boolean(true)]))]))
        #expect(JSONWriter.string(v.json) == #"{"a":[1,2.5,null],"s":[true]}"#)
        #expect(try RESPValue.decode(Array("-WRONGTYPE x\r\n".utf8)) == .error("WRONGTYPE x"))
        #expect(try RESPValue.decode(Array("=8\r\ntxt:info\r\n".utf8)) == .bulk(Array("info".utf8)))
        #expect(try RESPValue.decode(Array(",inf\r\n".utf8)).json == .string("inf"))
        for bad in ["", "$5\r\nab\r\n", "*2\r\n:1\r\n", ":1\r\n:2\r\n", "?x\r\n", ":abc\r\n"] {
            #expect(throws: RESPValue.DecodeError.self, "\(bad.debugDescription)") { try RESPValue.decode(Array(bad.utf8)) }
        }
    }

    @Test("Pylon's JSON cache commands become Redis argv; missing fields and unknown commands are 400s")
    func mapping() throws {
        let body = { (s: String) throws -> JSONValue in try JSONParser.parse(s) }
        #expect(try CacheCommandMapping.arguments("SET", body(#"{"key":"k","value":5,"ttl":10}"#)) == ["SET", "k", "5", "EX", "10"])
        #expect(try CacheCommandMapping.arguments("MSET", body(#"{"pairs":{"a":"1","b":true}}"#)) == ["MSET", "a", "1", "b", "true"])
        #expect(try CacheCommandMapping.arguments("ZRANGE", body(#"{"key":"z"}"#)) == ["ZRANGE", "z", "0", "10", "WITHSCORES"])
        #expect(try CacheCommandMapping.arguments("CLEANUP", body("{}")) == ["PYLON.CLEANUP"])
        #expect(throws: HostError.self) { try CacheCommandMapping.arguments("GET", body("{}")) }
        #expect(throws: HostError.self) { try CacheCommandMapping.arguments("SHUTDOWN", body("{}")) }
        #expect(CacheCommandMapping.result("EXISTS", .integer(1)) == .bool(true))
        #expect(CacheCommandMapping.result("ZRANGE", .array([.array([.bulk(Array("m".utf8)), .double(1.5)])]))
            == .array([.object([("member", .string("m")), ("score", .double(1.5))])]))
    }
}
