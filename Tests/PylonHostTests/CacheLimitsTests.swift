import Foundation
import Testing

/// How much one RESP request may make the cache plugin hold: a bulk string (a key, a `SET`
/// or `PUBLISH` value) is at most `max_bulk_bytes` (default 8 MiB; Redis'
/// `proto-max-bulk-len`), a command at most `max_multibulk` arguments, and a request at most
/// `max_query_bytes` in all. A length header over a limit is answered `-ERR` naming the
/// setting and the connection closes, before any body is read: these clients send the
/// header and nothing more, and still get their answer. Raw sockets, real host.
@Suite("Cache RESP limits: bulk length, multibulk count, request size (black-box, raw sockets)")
struct CacheLimitsTests {
    static let maxBulk = 8 << 20

    /// Sends `payload` and reads until the host closes the connection: what it answered.
    static func untilClosed(_ port: Int, _ payload: String) async throws -> String {
        try await respExchange(port, payload) { _ in false }
    }

    /// A RESP command.
    static func command(_ args: [String]) -> String {
        "*\(args.count)\r\n" + args.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    @Test("Hostile (defaults): SET and PUBLISH whose bulk header announces more than 8 MiB, and a multibulk count over 1,048,576, get -ERR naming the setting and a close before any body is sent; a value of exactly 8 MiB is stored and a 1 MiB PUBLISH is delivered; other clients are served throughout")
    func bulkAndMultibulkLimits() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let over = Self.maxBulk + 1
        let hostile: [(what: String, payload: String, expected: String)] = [
            ("SET", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$\(over)\r\n", "-ERR Protocol error: invalid bulk length: \(over) bytes is over the limit of \(Self.maxBulk) (the cache plugin's max_bulk_bytes)"),
            ("PUBLISH", "*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$\(over)\r\n", "max_bulk_bytes"),
            ("a key", "*2\r\n$3\r\nGET\r\n$999999999999\r\n", "-ERR Protocol error: invalid bulk length: 999999999999 bytes"),
            ("multibulk", "*1048577\r\n", "-ERR Protocol error: invalid multibulk length: 1048577 arguments is over the limit of 1048576 (the cache plugin's max_multibulk)"),
        ]
        for h in hostile {
            // Nothing after the header: the answer comes from the header alone, then EOF.
            let got = try await Self.untilClosed(port, h.payload)
            #expect(got.hasPrefix("-ERR Protocol error: invalid") && got.contains(h.expected) && got.hasSuffix("\r\n"), "\(h.what): \(got)")
        }

        // The happy twins: a value at the limit is stored whole; a 1 MiB message is delivered.
        let value = String(repeating: "v", count: Self.maxBulk)
        let set = try await respExchange(port, Self.command(["SET", "big", value]) + Self.command(["STRLEN", "big"])) { $0.hasSuffix(":\(Self.maxBulk)\r\n") }
        #expect(set == "+OK\r\n:\(Self.maxBulk)\r\n", "\(set.prefix(200))")
        let subscriber = try TestSocket.connect(port: port)
        defer { subscriber.close() }
        let message = String(repeating: "m", count: 1 << 20)
        let delivered = Task {
            try await onThread { () throws -> Int in
                try subscriber.send(Self.command(["SUBSCRIBE", "chan"]))
                var got = [UInt8]()
                while !String(decoding: got.suffix(16), as: UTF8.self).hasSuffix("mmm\r\n") {
                    guard case let .bytes(b) = subscriber.receive() else { break }
                    got += b
                }
                return got.count
            }
        }
        // Publish until the subscription is in place (it answers 1 subscriber then).
        var receivers = ":0\r\n"
        for _ in 0..<100 where receivers == ":0\r\n" {
            receivers = try await respExchange(port, Self.command(["PUBLISH", "chan", message])) { $0.hasSuffix("\r\n") }
            if receivers == ":0\r\n" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(receivers == ":1\r\n")
        #expect(try await delivered.value > 1 << 20)
        #expect(!host.hasExited)
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("Hostile (max_query_bytes 1mb, max_bulk_bytes 64kb): a command whose arguments add up to more than max_query_bytes is refused with -ERR and a close once its headers say so; one just under it runs")
    func requestSizeLimit() async throws {
        let (host, port) = try await HostProcess.startWithCache(cacheConfig: #""max_query_bytes": "1mb", "max_bulk_bytes": "64kb""#)
        defer { host.stop() }
        let arg = String(repeating: "a", count: 60_000)
        // 20 values of 60 KB announced (1.2 MB), each under max_bulk_bytes. Sent: the first
        // 17 (1.02 MB) and the 18th's length header, which takes the request past 1 MiB;
        // nothing more: the answer comes from that header.
        let hostile = "*41\r\n$4\r\nMSET\r\n" + (0..<17).map { "$1\r\n\($0 % 10)\r\n$\(arg.utf8.count)\r\n\(arg)\r\n" }.joined()
            + "$1\r\n7\r\n$\(arg.utf8.count)\r\n"
        let got = try await Self.untilClosed(port, hostile)
        #expect(got.hasPrefix("-ERR Protocol error: request too large") && got.contains("max_query_bytes"), "\(got.prefix(300))")

        // The happy twin: 16 of them (under 1 MiB in all) run.
        let ok = Self.command(["MSET"] + (0..<8).flatMap { ["k\($0)", arg] }) + Self.command(["STRLEN", "k7"])
        let reply = try await respExchange(port, ok) { $0.hasSuffix(":60000\r\n") }
        #expect(reply == "+OK\r\n:60000\r\n", "\(reply)")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("Hostile (max_bulk_bytes 64kb): the HTTP cache API refuses a value, key or message over max_bulk_bytes with 413 CACHE_VALUE_TOO_LARGE (it used to take anything under the 10 MiB body limit); a value at the limit is stored")
    func httpBulkLimit() async throws {
        let (host, _) = try await HostProcess.startWithCache(cacheConfig: #""max_bulk_bytes": "64kb""#)
        defer { host.stop() }
        let limit = 64 << 10
        let over = String(repeating: "v", count: limit + 1)
        let refused: [(what: String, path: String, body: String)] = [
            ("SET value", "/api/cache", #"{"cmd":"SET","key":"big","value":"\#(over)"}"#),
            ("SET key", "/api/cache", #"{"cmd":"SET","key":"\#(over)","value":"v"}"#),
            ("RPUSH value", "/api/cache", #"{"cmd":"RPUSH","key":"list","value":"\#(over)"}"#),
            ("PUBLISH message", "/api/pubsub/publish", #"{"channel":"chan","message":"\#(over)"}"#),
        ]
        for r in refused {
            let got = try await host.request("POST", r.path, json: r.body, token: HostProcess.adminToken)
            #expect(got.status == 413 && got.json.errorCode == "CACHE_VALUE_TOO_LARGE" && got.json["ok"].bool == false, "\(r.what): \(got.status) \(got.body.prefix(300))")
            #expect(got.json["error"]["message"].string?.contains("max_bulk_bytes") == true, "\(r.what): \(got.body.prefix(300))")
        }
        #expect(try await host.request("GET", "/api/cache/big", token: HostProcess.adminToken).status == 404, "nothing was stored")

        // The happy twin: a value of exactly the limit is stored and read back whole.
        let value = String(repeating: "v", count: limit)
        let set = try await host.request("POST", "/api/cache", json: #"{"cmd":"SET","key":"big","value":"\#(value)"}"#, token: HostProcess.adminToken)
        #expect(set.status == 200, "\(set.body.prefix(300))")
        let got = try await host.request("GET", "/api/cache/big", token: HostProcess.adminToken)
        #expect(got.status == 200 && got.json["result"].string?.utf8.count == limit, "\(got.body.prefix(200))")
    }
}

/// What one client's commands may make the cache hold in replies, and how long one
/// pattern may take: replies past `max_output_bytes` close the client as they are written
/// (a pipeline or a transaction is not run to its end first), and glob patterns (KEYS,
/// SCAN MATCH, PSUBSCRIBE) match in at most pattern × string steps.
@Suite("Cache RESP output and patterns: replies bounded as written, globs without backtracking (black-box, raw sockets)")
struct CacheOutputTests {
    /// Sends `payload`, waits for the host to act on it, then reads until it closes the
    /// connection: how many bytes came back.
    static func bytesUntilClosed(_ port: Int, _ payload: String) async throws -> Int {
        try await onThread {
            let s = try TestSocket.connect(port: port)
            defer { s.close() }
            try s.send(payload)
            // Not reading for a while, as a client that pipelines and reads later would.
            Thread.sleep(forTimeInterval: 0.3)
            var n = 0
            while case let .bytes(b) = s.receive() { n += b.count }
            return n
        }
    }

    /// The process' peak resident memory so far (VmHWM), in bytes.
    static func peakRSS(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }

    @Test("Hostile (max_output_bytes 1mb): 400 pipelined GETs of a 256 KiB value in one write, and the same in MULTI/EXEC, close the client once its replies pass 1 MiB; the host's peak memory does not grow by the 100 MiB they come to; other clients are served")
    func repliesBoundedAsWritten() async throws {
        let (host, port) = try await HostProcess.startWithCache(cacheConfig: #""max_output_bytes": "1mb""#)
        defer { host.stop() }
        let pid = try #require(host.pid)
        let size = 256 << 10
        let set = try await respExchange(port, CacheLimitsTests.command(["SET", "big", String(repeating: "v", count: size)])) { $0.hasSuffix("\r\n") }
        #expect(set == "+OK\r\n")
        let peak = try Self.peakRSS(pid)
        let gets = String(repeating: CacheLimitsTests.command(["GET", "big"]), count: 400)
        for (what, payload) in [("pipeline", gets), ("transaction", CacheLimitsTests.command(["MULTI"]) + gets + CacheLimitsTests.command(["EXEC"]))] {
            let received = try await Self.bytesUntilClosed(port, payload)
            #expect(received < 16 << 20, "\(what): \(received) bytes came back before the close")
        }
        let grown = try Self.peakRSS(pid) - peak
        #expect(grown < 50 << 20, "peak RSS grew by \(grown >> 20) MiB")
        // The happy twin: a client that reads its replies gets all of them.
        let reply = try await respExchange(port, String(repeating: CacheLimitsTests.command(["STRLEN", "big"]), count: 3)) { $0.utf8.count >= 3 * 9 }
        #expect(reply == String(repeating: ":\(size)\r\n", count: 3), "\(reply)")
        #expect(!host.hasExited)
    }

    @Test("Hostile: KEYS and PSUBSCRIBE with a pattern of many stars (*a*a*…*b) against long names answer (the backtracking matcher took minutes); matching keeps Redis's semantics")
    func globsWithoutBacktracking() async throws {
        let (host, port) = try await HostProcess.startWithCache()
        defer { host.stop() }
        let name = String(repeating: "a", count: 60)
        let evil = String(repeating: "*a", count: 30) + "*b"
        let keys = try await respExchange(port, CacheLimitsTests.command(["SET", name, "1"]) + CacheLimitsTests.command(["KEYS", evil])
                                          + CacheLimitsTests.command(["KEYS", String(repeating: "*a", count: 30) + "*"])) { $0.hasSuffix("\(name)\r\n") }
        #expect(keys == "+OK\r\n*0\r\n*1\r\n$60\r\n\(name)\r\n", "\(keys)")
        // A pattern subscriber with the same pattern: a publish to a long channel answers.
        let subscriber = try TestSocket.connect(port: port)
        defer { subscriber.close() }
        try subscriber.send(CacheLimitsTests.command(["PSUBSCRIBE", evil, "a*a"]))
        var receivers = ":0\r\n"
        for _ in 0..<100 where receivers == ":0\r\n" {
            receivers = try await respExchange(port, CacheLimitsTests.command(["PUBLISH", name, "m"])) { $0.hasSuffix("\r\n") }
            if receivers == ":0\r\n" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(receivers == ":1\r\n", "only a*a matches")
        #expect(try await host.request("GET", "/health").status == 200)
    }
}
