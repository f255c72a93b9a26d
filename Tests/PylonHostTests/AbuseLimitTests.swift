import Foundation
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// Abuse limits and CSRF (issue 16 items 9 and 10): the per-address request limit (429
/// `RATE_LIMITED` + `Retry-After`, on the router path and on the Task-free path alike, for
/// WebSocket upgrades too, `/health` and OPTIONS exempt, recovery after the window, X-Forwarded-For with
/// trusted hops), the auth bucket for guest and anonymous sessions, and the CSRF check on
/// writes authenticated by the session cookie. Requests go over raw sockets, pipelined in one
/// write, so a burst reaches the host at once whatever the machine's load.
@Suite("Abuse limits and CSRF (black-box, raw sockets; limiter units)")
struct AbuseLimitTests {
    /// Alice and bob with an owner-only rule on `Note`: the push-scope suite's app.
    static let manifest = PushScopeTests.manifest

    typealias Answer = RequestPathTests.Answer

    /// Sends `requests` pipelined in one write on a new connection; returns their answers.
    static func exchange(_ host: HostProcess, _ requests: [String]) async throws -> [Answer] {
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        try socket.send(requests.joined())
        return try await RequestPathTests.read(socket, count: requests.count).answers
    }

    static func get(_ path: String, _ extra: String = "") -> String { RequestPathTests.get(path, extra: extra) }
    static func post(_ path: String, _ body: String, _ extra: String = "") -> String { RequestPathTests.post(path, body, extra: extra) }
    static func options(_ path: String) -> String { "OPTIONS \(path) HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n\r\n" }

    static func code(_ a: Answer) -> String? { (try? TestJSON.parse(a.body)).errorCode }

    /// Sends `request` until it is not refused with 429 (each refusal is not counted, so
    /// polling does not extend the window); fails after a generous wait.
    static func awaitRecovery(_ host: HostProcess, _ request: String) async throws -> Answer {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let a = try await exchange(host, [request]).first, a.status != 429 { return a }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw RealtimeTestError("the limit was not lifted within 60 s of a 10 s window")
    }

    // MARK: - Request rate limit

    @Test("Request limit: over it 429 RATE_LIMITED + Retry-After on the router path and the Task-free path; /health and OPTIONS exempt; lifted after the window")
    func requestLimit() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_RATE_LIMIT_MAX": "4", "PYLON_RATE_LIMIT_WINDOW": "10"])
        defer { host.stop() }
        let insert = Self.post("/api/entities/Note", #"{"ownerId":"x","title":"t"}"#)
        // list: router; get by id and insert: answered without a Task (APIMiddleware.handleNow).
        let answers = try await Self.exchange(host, [
            Self.get("/api/entities/Note"), Self.get("/api/entities/Note/nope"), insert, Self.get("/api/entities/Note"),
            Self.get("/api/entities/Note/nope"), insert, Self.get("/api/entities/Note"),
            Self.get("/health"), Self.options("/api/entities/Note"),
        ])
        let summary = answers.map { "\($0.status) \($0.body.prefix(100))" }
        #expect(answers.map(\.status) == [200, 404, 403, 200, 429, 429, 429, 200, 204], "\(summary)")
        for refused in answers[4...6] {
            #expect(Self.code(refused) == "RATE_LIMITED", "\(refused.body)")
            let wait = try #require(refused.headers["retry-after"].flatMap { Int($0) }, "\(refused.headers)")
            #expect((1...10).contains(wait), "\(refused.headers)")
            #expect(refused.headers["access-control-allow-origin"] == "*", "a 429 carries the usual headers: \(refused.headers)")
        }
        let recovered = try await Self.awaitRecovery(host, Self.get("/api/entities/Note"))
        #expect(recovered.status == 200, "\(recovered.body)")
        let counters = try await host.request("GET", "/metrics", token: HostProcess.adminToken).json["counters"]
        #expect((counters["http_rate_limited_total"].int ?? 0) >= 3, "\(counters)")
    }

    @Test("Request limit per client: with PYLON_TRUST_PROXY_HOPS=1 each X-Forwarded-For client has its own count; entries left of the trusted one are ignored; an IPv6 /64 counts as one")
    func requestLimitPerClient() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: [
            "PYLON_RATE_LIMIT_MAX": "2", "PYLON_RATE_LIMIT_WINDOW": "600", "PYLON_TRUST_PROXY_HOPS": "1",
        ])
        defer { host.stop() }
        func from(_ xff: String?) -> String { Self.get("/api/entities/Note", xff.map { "X-Forwarded-For: \($0)\r\n" } ?? "") }
        let answers = try await Self.exchange(host, [
            from("203.0.113.7"), from("203.0.113.7"), from("203.0.113.7"),
            // A client cannot escape by prepending addresses: the proxy's entry is the last.
            from("198.51.100.9, 203.0.113.7"),
            from("203.0.113.8"),
            from("2001:db8:0:1::1"), from("2001:db8:0:1::2"), from("2001:db8:0:2::1"),
            // Not an address: the socket peer (127.0.0.1) counts.
            from("not-an-ip"), from(nil),
        ])
        #expect(answers.map(\.status) == [200, 200, 429, 429, 200, 200, 200, 200, 200, 200],
                "\(answers.map { "\($0.status) \($0.body.prefix(80))" })")
        let more = try await Self.exchange(host, [from("2001:db8:0:1::3"), from(nil), from("203.0.113.8")])
        #expect(more.map(\.status) == [429, 429, 200], "\(more.map { "\($0.status) \($0.body.prefix(80))" })")
    }

    // MARK: - Auth buckets

    @Test("WebSocket upgrades take from the request limit: over it 429 RATE_LIMITED + Retry-After and a close, on the API port and port+1")
    func upgradesAreCounted() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_RATE_LIMIT_MAX": "2", "PYLON_RATE_LIMIT_WINDOW": "600"],
                                               compatPorts: true)
        defer { host.stop() }
        func upgrade(_ path: String) -> String {
            "GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        }
        var heads: [String] = []
        var sockets: [TestSocket] = []
        defer { for s in sockets { s.close() } }
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/"), (host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            let socket = try TestSocket.connect(port: port)
            sockets.append(socket)
            try socket.send(upgrade(path))
            heads.append(try await RequestPathTests.watched(socket, timeout: 30) { _ in
                var buf: [UInt8] = []
                while RequestPathTests.find(buf, Array("\r\n\r\n".utf8)) == nil, case let .bytes(b) = socket.receive() { buf += b }
                return String(decoding: buf, as: UTF8.self)
            })
        }
        let statuses = heads.map { Int($0.dropFirst("HTTP/1.1 ".count).prefix(3)) ?? 0 }
        #expect(statuses == [101, 101, 429, 429], "\(heads)")
        for refused in heads.dropFirst(2) {
            #expect(refused.lowercased().contains("retry-after: ") && refused.lowercased().contains("connection: close"), "\(refused)")
        }
        // The budget is the address's, whatever it was spent on.
        let after = try await Self.exchange(host, [Self.get("/api/entities/Note")])
        #expect(after.first?.status == 429 && after.first.flatMap(Self.code) == "RATE_LIMITED", "\(after.map(\.body))")
    }

    @Test("Guest and anonymous sessions share the SEND auth bucket per address: 429 + Retry-After beyond it; X-Forwarded-For is ignored without trusted hops")
    func guestBucket() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_AUTH_RATE_LIMIT_SEND": "2"], dev: false)
        defer { host.stop() }
        let guest = try await host.rawRequest("POST", "/api/auth/guest")
        #expect(guest.status == 201, "\(guest.body)")
        #expect(guest.json["guest"].bool == true && guest.json["user_id"].string?.hasPrefix("guest_") == true, "\(guest.body)")
        let anonymous = try await host.rawRequest("POST", "/api/auth/anonymous")
        #expect(anonymous.status == 200, "\(anonymous.body)")
        let token = try #require(anonymous.json["token"].string, "\(anonymous.body)")
        #expect(anonymous.json["is_guest"].bool == true && anonymous.json["expires_at"].int != nil, "\(anonymous.body)")
        #expect(anonymous.json["user_id"].string?.hasPrefix("guest_") == true, "\(anonymous.body)")
        let me = try await host.request("GET", "/api/auth/me", token: token)
        #expect(me.json["user_id"].string == anonymous.json["user_id"].string && me.json["is_guest"].bool == true, "\(me.body)")

        for path in ["/api/auth/guest", "/api/auth/anonymous"] {
            let refused = try await host.rawRequest("POST", path, headers: ["X-Forwarded-For": "198.51.100.\(path.count)"])
            #expect(refused.status == 429, "\(path): \(refused.body)")
            #expect(refused.json.errorCode == "RATE_LIMITED", "\(refused.body)")
            let wait = try #require(refused.headers["retry-after"].flatMap { Int($0) }, "\(refused.headers)")
            #expect((1...60).contains(wait), "\(refused.headers)")
        }
        // Only minting is limited: the guest's own requests go on.
        #expect(try await host.request("GET", "/api/entities/Note", token: token).status == 200)
    }

    // MARK: - CSRF

    @Test("CSRF: writes without a bearer token need a trusted Origin (or Referer) or the host's own; a cookie write with no origin is refused; bearer writes and reads are not checked")
    func csrf() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_TRUSTED_ORIGINS": "https://app.example, https://admin.example/"], dev: false)
        defer { host.stop() }
        let token = try await host.mintSession("alice")
        // Warm the session cache, so inserts are answered without a Task as well.
        #expect(try await host.request("GET", "/api/auth/me", token: token).json["user_id"].string == "alice")
        let body = #"{"ownerId":"alice","title":"t"}"#
        let cookie = "Cookie: theme=dark; push-scope_session=\(token)\r\n"
        func insert(_ extra: String) -> String { Self.post("/api/entities/Note", body, extra) }
        let answers = try await Self.exchange(host, [
            insert(cookie + "Origin: https://evil.example\r\n"),
            insert(cookie + "Origin: https://app.example\r\n"),
            insert(cookie + "Origin: HTTPS://ADMIN.EXAMPLE\r\n"),
            insert(cookie),
            insert(cookie + "Referer: https://app.example/page?x=1\r\n"),
            insert(cookie + "Referer: https://evil.example/https://app.example/\r\n"),
            insert(cookie + "Origin: null\r\n"),
            insert(cookie + "Origin: https://app.example.evil.example\r\n"),
            insert("Authorization: Bearer \(token)\r\n" + cookie + "Origin: https://evil.example\r\n"),
            insert("Authorization: Bearer \(token)\r\nOrigin: https://evil.example\r\n"),
            // Same origin: a page the host serves itself.
            "POST /api/entities/Note HTTP/1.1\r\nHost: 127.0.0.1:\(host.port)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(cookie)Origin: http://127.0.0.1:\(host.port)\r\n\r\n\(body)",
            Self.get("/api/entities/Note", cookie + "Origin: https://evil.example\r\n"),
            // No credential from a foreign page: refused too (a login form there could sign
            // the visitor in to the attacker's account), as in Pylon.
            insert("Origin: https://evil.example\r\n"),
        ])
        let summary = answers.map { "\($0.status) \($0.body.prefix(90))" }
        #expect(answers.map(\.status) == [403, 201, 201, 403, 201, 403, 403, 403, 201, 201, 201, 200, 403], "\(summary)")
        for i in [0, 3, 5, 6, 7, 12] { #expect(Self.code(answers[i]) == "CSRF_REJECTED", "\(i): \(answers[i].body)") }

        // Router-only routes are checked the same way.
        let id = try #require((try? TestJSON.parse(answers[1].body))["id"].string)
        let patch = "PATCH /api/entities/Note/\(id) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\(cookie)"
        let push = #"{"changes":[{"entity":"Note","row_id":"_pending_1","kind":"insert","data":{"ownerId":"alice","title":"p"},"op_id":"o1"}]}"#
        let more = try await Self.exchange(host, [
            patch + "Origin: https://evil.example\r\n\r\n" + #"{"title":"bad"}"#,
            patch + "Origin: https://app.example\r\n\r\n" + #"{"title":"ok!"}"#,
            Self.post("/api/sync/push", push, cookie),
            Self.post("/api/sync/push", push, cookie + "Origin: https://app.example\r\n"),
            "DELETE /api/entities/Note/\(id) HTTP/1.1\r\nHost: x\r\n\(cookie)Referer: https://evil.example/\r\n\r\n",
        ])
        #expect(more.map(\.status) == [403, 200, 403, 200, 403], "\(more.map { "\($0.status) \($0.body.prefix(90))" })")
        #expect(try await host.request("GET", "/api/entities/Note/\(id)", token: token).json["title"].string == "ok!")
    }

    @Test("CSRF in --dev: every origin is trusted (Pylon's `*`) unless PYLON_TRUSTED_ORIGINS says otherwise")
    func csrfDev() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: true)
        defer { host.stop() }
        let token = try await host.mintSession("alice")
        let answers = try await Self.exchange(host, [
            Self.post("/api/entities/Note", #"{"ownerId":"alice","title":"t"}"#, "Cookie: push-scope_session=\(token)\r\nOrigin: https://evil.example\r\n"),
            Self.post("/api/entities/Note", #"{"ownerId":"alice","title":"t"}"#, "Cookie: push-scope_session=\(token)\r\n"),
        ])
        #expect(answers.map(\.status) == [201, 201], "\(answers.map { "\($0.status) \($0.body.prefix(90))" })")
    }

    // MARK: - Units: settings, trusted origins, the limiter and client addresses

    @Test("Settings: Pylon's defaults (600 per 60 s, 100,000 in --dev), environment overrides, auth buckets, trusted origins")
    func settings() throws {
        var c = try HostConfig.fromEnvironment([:])
        #expect(c.requestRateLimit == 600 && c.rateLimitWindow == 60 && c.trustProxyHops == 0)
        #expect(c.authRateLimits.caps[.send] == AuthRateLimits.Caps(perAddressPerMinute: 3, perAccountPerHour: 10))
        c.dev = true
        #expect(c.requestRateLimit == 100_000)
        let e = try HostConfig.fromEnvironment([
            "PYLON_RATE_LIMIT_MAX": "0", "PYLON_RATE_LIMIT_WINDOW": "5", "PYLON_TRUST_PROXY_HOPS": "2",
            "PYLON_AUTH_RATE_LIMIT_SEND": "7", "PYLON_AUTH_RATE_LIMIT_LOGIN": "1, 2",
            "PYLON_TRUSTED_ORIGINS": "https://a.example", "PYLON_CSRF_ORIGINS": "https://b.example,",
        ])
        #expect(e.requestRateLimit == 0 && e.rateLimitWindow == 5 && e.trustProxyHops == 2)
        #expect(e.authRateLimits.caps[.send] == AuthRateLimits.Caps(perAddressPerMinute: 7, perAccountPerHour: 0))
        #expect(e.authRateLimits.caps[.login] == AuthRateLimits.Caps(perAddressPerMinute: 1, perAccountPerHour: 2))
        #expect(e.trustedOrigins == ["https://a.example", "https://b.example"])
        for bad in [["PYLON_RATE_LIMIT_MAX": "-1"], ["PYLON_AUTH_RATE_LIMIT_SEND": "3,x"], ["PYLON_AUTH_RATE_LIMIT_VERIFY": "1,2,3"]] {
            #expect(throws: HostError.self, "\(bad)") { try HostConfig.fromEnvironment(bad) }
        }
        // Trusted origins: the environment's; else * in --dev; else the manifest's and the CORS origin.
        var manifest = try Manifest.decode(Array(Self.manifest.utf8))
        manifest.auth.trustedOrigins = ["https://m.example"]
        var p = HostConfig()
        #expect(p.csrfOrigins(manifest: manifest) == ["https://m.example"])
        p.corsOrigin = "https://cors.example"
        #expect(p.csrfOrigins(manifest: manifest) == ["https://m.example", "https://cors.example"])
        p.dev = true
        #expect(p.csrfOrigins(manifest: manifest) == ["*"])
        p.trustedOrigins = ["https://env.example"]
        #expect(p.csrfOrigins(manifest: manifest) == ["https://env.example"])
    }

    @Test("CSRFGuard: configured origins are normalized (case, trailing slash, a URL's path dropped); `*` trusts all; a Referer's origin")
    func trustedOrigins() {
        let g = CSRFGuard(origins: ["https://app.example/login", " HTTPS://B.example/ ", "", "http://localhost:5173"], cookie: SessionCookie(name: "s"))
        #expect(g.trusted == ["https://app.example", "https://b.example", "http://localhost:5173"])
        #expect(CSRFGuard(origins: ["https://a.example", "*"], cookie: SessionCookie(name: "s")).trusted == nil)
        #expect(CSRFGuard.origin(ofURL: "https://app.example:8443/p?q#f") == "https://app.example:8443")
        #expect(CSRFGuard.origin(ofURL: "https://app.example?x=https://b") == "https://app.example")
        for bad in ["", "/relative/path", "://x", "app.example"] {
            #expect(CSRFGuard.origin(ofURL: bad) == nil, "\(bad)")
        }
    }

    @Test("FixedWindowLimiter: limit per window, Retry-After until the window's end, a new window after it")
    func limiterWindow() {
        let limiter = FixedWindowLimiter<String>(limit: 3, windowSeconds: 10, maxKeys: 1000)
        let t0: UInt64 = 1_000_000_000_000
        #expect((0..<3).map { _ in limiter.take("a", now: t0) } == [nil, nil, nil])
        #expect(limiter.take("a", now: t0 + 1_000_000) == 10)
        #expect(limiter.take("a", now: t0 + 9_500_000_000) == 1)
        #expect(limiter.take("b", now: t0 + 9_500_000_000) == nil, "another key has its own count")
        #expect(limiter.take("a", now: t0 + 10_000_000_000) == nil, "a new window")
        #expect(limiter.take("a", now: t0 + 10_000_000_001) == nil)
    }

    @Test("FixedWindowLimiter: memory stays bounded under a flood of new keys; expired keys are dropped and new keys are counted in the table again")
    func limiterMemoryBound() {
        let limiter = FixedWindowLimiter<Int>(limit: 1, windowSeconds: 1, maxKeys: 64)
        let t0: UInt64 = 5_000_000_000
        for k in 0..<100_000 { _ = limiter.take(k, now: t0) }
        #expect(limiter.trackedKeys <= 64)
        // Each stripe sweeps once its window has passed, so new keys find room again.
        for k in 100_000..<200_000 { _ = limiter.take(k, now: t0 + 2_000_000_000) }
        #expect(limiter.trackedKeys <= 64)
        #expect(limiter.trackedKeys > 0)
        let t2 = t0 + 4_000_000_000
        let tracked = (200_000..<200_100).first { limiter.take($0, now: t2) == nil && limiter.take($0, now: t2) != nil }
        #expect(tracked != nil, "after a sweep, new keys are counted again")
    }

    /// Keys whose stripe (`hashValue % stripeCount`) is the one `key` falls in.
    static func sameStripe(as key: String, count: Int) -> [String] {
        let n = UInt(FixedWindowLimiter<String>.stripeCount)
        let stripe = UInt(bitPattern: key.hashValue) % n
        return Array((0...).lazy.map { "filler-\($0)" }.filter { UInt(bitPattern: $0.hashValue) % n == stripe }.prefix(count))
    }

    @Test("FixedWindowLimiter: a key that finds the table full is still counted (an overestimate at most): it meets the limit, `waiting` says so, a fresh key is not locked out")
    func limiterFullTableCounts() {
        let window: UInt64 = 60_000_000_000
        let limiter = FixedWindowLimiter<String>(limit: 20, windowSeconds: 60, maxKeys: 16)
        let t0: UInt64 = 1_000_000_000_000
        // 300 keys from as many addresses: far more than the 16 the table holds.
        for k in 0..<300 { #expect(limiter.take("flood-\(k)", now: t0) == nil) }
        #expect(limiter.trackedKeys == 16)
        // The key under attack: at most its limit, whatever the flood left in its counter.
        let answers = (0..<40).map { _ in limiter.take("victim@example.com", now: t0 + 1_000_000_000) }
        let allowed = answers.prefix { $0 == nil }.count
        #expect(allowed <= 20 && allowed >= 15, "allowed \(allowed) of 40")
        #expect(answers.dropFirst(allowed).allSatisfy { $0 == 59 }, "\(answers)")
        #expect(limiter.waiting("victim@example.com", now: t0 + 1_000_000_000) == 59)
        #expect(limiter.waiting("someone-else", now: t0 + 1_000_000_000) == nil)
        // Overestimates are bounded: 284 keys over 16 × 64 counters lock out (almost) nobody.
        let fresh = (0..<100).filter { limiter.take("fresh-\($0)", now: t0 + 2_000_000_000) == nil }.count
        #expect(fresh >= 95, "\(fresh) of 100 fresh keys let in")
        // After the window, the victim starts over.
        #expect(limiter.take("victim@example.com", now: t0 + window + 1_000_000_000) == nil)
    }

    @Test("FixedWindowLimiter: events counted while the table was full carry over when the key later finds room, with the window they were counted in")
    func limiterOverflowCarriesOver() throws {
        let limiter = FixedWindowLimiter<String>(limit: 3, windowSeconds: 60, maxKeys: 16) // one key per stripe
        let second: UInt64 = 1_000_000_000, t0: UInt64 = 1_000_000_000_000
        let filler = try #require(Self.sameStripe(as: "victim", count: 1).first)
        #expect(limiter.take(filler, now: t0) == nil) // fills the victim's stripe until t0 + 60 s
        #expect(limiter.take("victim", now: t0 + 30 * second) == nil)
        #expect(limiter.take("victim", now: t0 + 30 * second) == nil)
        #expect(limiter.trackedKeys == 1, "the victim was counted outside the table")
        // The filler's window has ended: the victim gets its place, with its 2 events.
        #expect(limiter.take("victim", now: t0 + 61 * second) == nil)
        #expect(limiter.trackedKeys == 1)
        #expect(limiter.take("victim", now: t0 + 61 * second) == 29, "refused until the window its first events were counted in ends")
        #expect(limiter.waiting("victim", now: t0 + 61 * second) == 29)
        #expect(limiter.take("victim", now: t0 + 90 * second) == nil)
    }

    @Test("ClientAddress: IPv4 and IPv4-mapped are one; IPv6 by /64; X-Forwarded-For counted from the right")
    func clientAddresses() {
        #expect(ClientAddress.parse("203.0.113.7") == ClientAddress.parse("::ffff:203.0.113.7"))
        #expect(ClientAddress.parse("2001:db8::1") == ClientAddress.parse("[2001:db8::ffff]"))
        #expect(ClientAddress.parse("2001:db8::1") != ClientAddress.parse("2001:db8:0:1::1"))
        for bad in ["", "1.2.3", "1.2.3.4:80", "host.example", "::g", "1.2.3.4 "] {
            #expect(ClientAddress.parse(Substring(bad)) == nil, "\(bad)")
        }
        let list = "198.51.100.1, 198.51.100.2 ,198.51.100.3"
        #expect(ClientAddress.entry(list, fromRight: 1) == "198.51.100.3")
        #expect(ClientAddress.entry(list, fromRight: 2) == "198.51.100.2")
        #expect(ClientAddress.entry(list, fromRight: 3) == "198.51.100.1")
        #expect(ClientAddress.entry(list, fromRight: 4) == nil)
        #expect(ClientAddress.entry("", fromRight: 1) == "")
    }
}
