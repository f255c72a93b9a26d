import Foundation
import Testing
@testable import PylonCore

/// The session cookie as Pylon has it (pylon-aux.md §1.2 "The cookie"), through the real
/// host: `<app>_session` by default, `PYLON_COOKIE_NAME`/`_DOMAIN`/`_SECURE`/`_SAME_SITE`,
/// Max-Age=0 to clear it, the legacy `pylon_session` still read (never winning over the
/// configured one, and a cookie credential to the CSRF check all the same), the cookie on
/// WebSocket handshakes only from trusted pages, and bad settings refused at start-up.
@Suite("Session cookie: name, attributes, legacy name, bad settings (black-box, real pylon-host)")
struct SessionCookieTests {
    /// Users with passwords, and notes any signed-in user may write and read.
    static func manifest(name: String) -> String {
        """
        {"manifest_version": 1, "name": \(TestJSON.quote(name)), "version": "0.1.0",
         "entities": [
           {"name": "User", "fields": [
              {"name": "email", "type": "string", "optional": false, "unique": true},
              {"name": "displayName", "type": "string", "optional": true, "unique": false},
              {"name": "createdAt", "type": "string", "optional": true, "unique": false}], "indexes": []},
           {"name": "Note", "fields": [
              {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
         "routes": [],
         "policies": [{"name": "users", "entity": "User", "allowRead": "auth.userId != null", "allowInsert": "false",
                       "allowUpdate": "false", "allowDelete": "false"},
                      {"name": "notes", "entity": "Note", "allowRead": "auth.userId != null", "allowInsert": "auth.userId != null",
                       "allowUpdate": "false", "allowDelete": "false"}]}
        """
    }

    /// One answer with every `Set-Cookie` kept (a dictionary of headers keeps one).
    struct Answer {
        var status: Int
        var cookies: [String]
        var body: String
        var json: Any? { try? TestJSON.parse(body) }
        /// The `Set-Cookie` for `name`, if one was sent.
        func cookie(_ name: String) -> String? { cookies.first { $0.hasPrefix(name + "=") } }
    }

    /// `method path` on a connection of its own (`headers` as "Name: value" lines).
    static func send(_ host: HostProcess, _ method: String, _ path: String, body: String? = nil,
                     _ headers: [String] = []) async throws -> Answer {
        let port = host.port
        return try await onThread {
            let socket = try TestSocket.connect(port: port)
            defer { socket.release() }
            var req = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
            for h in headers { req += h + "\r\n" }
            if let body { req += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
            try socket.send(req + "\r\n" + (body ?? ""))
            var bytes: [UInt8] = []
            while case let .bytes(b) = socket.receive() { bytes += b }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let split = text.range(of: "\r\n\r\n") else { throw RealtimeTestError("no HTTP answer: \(text)") }
            let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
            let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
            let cookies = lines.filter { $0.lowercased().hasPrefix("set-cookie:") }.map { String($0.dropFirst(11)).trimmingCharacters(in: .whitespaces) }
            return Answer(status: status, cookies: cookies, body: String(text[split.upperBound...]))
        }
    }

    /// Registers `email` from a page at `origin`: the answer carries the session cookie.
    static func register(_ host: HostProcess, _ email: String, origin: String) async throws -> (answer: Answer, token: String, user: String) {
        let a = try await send(host, "POST", "/api/auth/password/register",
                               body: #"{"email":\#(TestJSON.quote(email)),"password":"a long enough password"}"#, ["Origin: \(origin)"])
        let token = try #require(a.json["token"].string, "\(a.status) \(a.body)")
        return (a, token, try #require(a.json["user_id"].string))
    }

    /// Who `cookie` (a `Cookie` header value) signs in as (nil: anonymous).
    static func who(_ host: HostProcess, cookie: String) async throws -> String? {
        try await send(host, "GET", "/api/auth/me", ["Cookie: \(cookie)"]).json["user_id"].string
    }

    @Test("Default name: <app>_session with odd characters as _; Path=/, HttpOnly, SameSite=Lax, no Secure in --dev; read back under the new and the legacy name; the configured cookie wins; sign-out clears both with Max-Age=0")
    func defaultName() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest(name: "Café App/2"))
        defer { host.stop() }
        let name = "Caf__App_2_session"
        let (signIn, token, user) = try await Self.register(host, "ann@example.com", origin: host.baseURL)
        let set = try #require(signIn.cookie(name), "\(signIn.cookies)")
        #expect(set.hasPrefix("\(name)=\(token); Path=/; Max-Age=") && set.hasSuffix("; HttpOnly; SameSite=Lax"), "\(set)")
        #expect(!set.contains("Secure") && !set.contains("Domain="), "\(set)")
        #expect(!signIn.cookies.contains { $0.hasPrefix("pylon_session=") }, "the legacy name is never written: \(signIn.cookies)")

        #expect(try await Self.who(host, cookie: "\(name)=\(token)") == user)
        #expect(try await Self.who(host, cookie: "theme=dark; pylon_session=\(token)") == user, "a browser signed in before the upgrade")
        #expect(try await Self.who(host, cookie: "x\(name)=\(token); \(name)x=\(token)") == nil, "only the exact name counts")
        // Someone planted a legacy cookie with their own session: whatever the order, the
        // browser's real cookie decides.
        let mallory = try await host.mintSession("mallory")
        #expect(try await Self.who(host, cookie: "pylon_session=\(mallory); \(name)=\(token)") == user)
        #expect(try await Self.who(host, cookie: "\(name)=\(token); pylon_session=\(mallory)") == user)
        #expect(try await Self.who(host, cookie: "\(name)=; pylon_session=\(mallory)") == "mallory", "an empty cookie is no cookie")

        let doc = try await host.request("GET", "/api/openapi.json")
        #expect(doc.json["components"]["securitySchemes"]["cookie"]["name"].string == name, "\(doc.body.prefix(200))")

        // Sign-out with only the configured cookie clears it; with a legacy one too, both.
        let other = try await host.mintSession(user)
        let out = try await Self.send(host, "POST", "/api/auth/logout", ["Cookie: \(name)=\(other)"])
        #expect(out.status == 200 && out.cookies == ["\(name)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"], "\(out.cookies)")
        let both = try await Self.send(host, "POST", "/api/auth/logout", ["Cookie: pylon_session=\(mallory); \(name)=\(token)"])
        #expect(both.json["revoked"].bool == true && both.cookies.count == 2, "\(both.body) \(both.cookies)")
        #expect(both.cookie(name) == "\(name)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax", "\(both.cookies)")
        #expect(both.cookie("pylon_session") == "pylon_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax", "\(both.cookies)")
        #expect(try await Self.who(host, cookie: "\(name)=\(token)") == nil, "the configured cookie's session ended")
    }

    @Test("PYLON_COOKIE_NAME, _DOMAIN and SameSite=None (which forces Secure even in --dev): on sign-in, refresh and sign-out alike")
    func configured() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest(name: "ignored"), env: [
            "PYLON_COOKIE_NAME": "__Secure-sid", "PYLON_COOKIE_DOMAIN": ".Example.COM", "PYLON_COOKIE_SAME_SITE": "NONE",
        ])
        defer { host.stop() }
        let (signIn, token, user) = try await Self.register(host, "bea@example.com", origin: host.baseURL)
        let set = try #require(signIn.cookie("__Secure-sid"), "\(signIn.cookies)")
        #expect(set.hasPrefix("__Secure-sid=\(token); Path=/; Domain=example.com; Max-Age=")
                && set.hasSuffix("; HttpOnly; Secure; SameSite=None"), "\(set)")
        #expect(!signIn.cookies.contains { $0.hasPrefix("ignored_session") }, "\(signIn.cookies)")
        #expect(try await Self.who(host, cookie: "__Secure-sid=\(token)") == user)
        #expect(try await Self.who(host, cookie: "pylon_session=\(token)") == user, "the legacy name is read beside a configured one")
        #expect(try await Self.who(host, cookie: "ignored_session=\(token)") == nil, "the default name is not read once another is configured")

        // A refresh by cookie from a page sets the new token under the same name and attributes.
        let fresh = try await Self.send(host, "POST", "/api/auth/refresh", ["Cookie: __Secure-sid=\(token)", "Origin: \(host.baseURL)"])
        let newToken = try #require(fresh.json["token"].string, "\(fresh.body)")
        let refreshed = try #require(fresh.cookie("__Secure-sid"), "\(fresh.cookies)")
        #expect(refreshed.hasPrefix("__Secure-sid=\(newToken); Path=/; Domain=example.com;") && refreshed.hasSuffix("; HttpOnly; Secure; SameSite=None"))

        let out = try await Self.send(host, "DELETE", "/api/auth/sessions", ["Cookie: __Secure-sid=\(newToken)"])
        #expect(out.status == 200 && out.cookies == ["__Secure-sid=; Path=/; Domain=example.com; Max-Age=0; HttpOnly; Secure; SameSite=None"],
                "\(out.status) \(out.cookies)")
    }

    /// (--dev, environment, Secure expected, SameSite expected)
    static let attributeCases: [(Bool, [String: String], Bool, String)] = [
        (false, [:], true, "Lax"),
        (false, ["PYLON_COOKIE_SECURE": "false", "PYLON_COOKIE_SAME_SITE": "strict"], false, "Strict"),
        (true, ["PYLON_COOKIE_SECURE": "TRUE", "PYLON_COOKIE_SAME_SITE": "Lax"], true, "Lax"),
    ]

    @Test("Secure by default outside --dev, PYLON_COOKIE_SECURE overriding either way; PYLON_COOKIE_SAME_SITE in any case", arguments: attributeCases)
    func secure(_ dev: Bool, _ env: [String: String], _ secure: Bool, _ sameSite: String) async throws {
        let page = "https://app.example"
        let host = try await HostProcess.start(manifest: Self.manifest(name: "attrs"), env: env.merging(["PYLON_TRUSTED_ORIGINS": page]) { a, _ in a }, dev: dev)
        defer { host.stop() }
        let (signIn, _, _) = try await Self.register(host, "cy@example.com", origin: page)
        let set = try #require(signIn.cookie("attrs_session"), "\(signIn.cookies)")
        #expect(set.hasSuffix(secure ? "; HttpOnly; Secure; SameSite=\(sameSite)" : "; HttpOnly; SameSite=\(sameSite)"), "\(set)")
        let out = try await Self.send(host, "POST", "/api/auth/logout", ["Origin: \(page)"])
        #expect(out.cookies == ["attrs_session=; Path=/; Max-Age=0; HttpOnly\(secure ? "; Secure" : ""); SameSite=\(sameSite)"], "\(out.cookies)")
    }

    @Test("Hostile: the legacy cookie is a cookie credential to the CSRF check; a WebSocket handshake uses the cookie only from a trusted page")
    func hostile() async throws {
        let page = "https://app.example"
        let host = try await HostProcess.start(manifest: Self.manifest(name: "guarded"), env: ["PYLON_TRUSTED_ORIGINS": page], dev: false)
        defer { host.stop() }
        let token = try await host.mintSession("alice")
        let note = #"{"title":"t"}"#
        for cookie in ["guarded_session=\(token)", "pylon_session=\(token)"] {
            let evil = try await Self.send(host, "POST", "/api/entities/Note", body: note, ["Cookie: \(cookie)", "Origin: https://evil.example"])
            #expect(evil.status == 403 && evil.json.errorCode == "CSRF_REJECTED", "\(cookie): \(evil.status) \(evil.body)")
            let fine = try await Self.send(host, "POST", "/api/entities/Note", body: note, ["Cookie: \(cookie)", "Origin: \(page)"])
            #expect(fine.status == 201, "\(cookie): \(fine.status) \(fine.body)")
        }

        // From the trusted page the cookie opens the stream, which then carries alice's data.
        let trusted = try await TestWebSocket.connect(port: host.port, headers: ["Cookie": "guarded_session=\(token)", "Origin": page])
        defer { trusted.abort() }
        let legacy = try await TestWebSocket.connect(port: host.port, headers: ["Cookie": "pylon_session=\(token)", "Origin": page])
        defer { legacy.abort() }
        let written = try await host.request("POST", "/api/entities/Note", json: note, token: token)
        let id = try #require(written.json["id"].string, "\(written.body)")
        _ = try await trusted.waitForEvent(rowID: id)
        _ = try await legacy.waitForEvent(rowID: id)
        // From any other page (or none) the cookie is ignored: an anonymous stream is refused.
        for origin in ["https://evil.example", nil] {
            var headers = ["Cookie": "guarded_session=\(token)"]
            headers["Origin"] = origin
            let ws = try await TestWebSocket.connect(port: host.port, headers: headers)
            defer { ws.abort() }
            let close = try await ws.waitForClose()
            #expect(close?.code == 1008, "\(origin ?? "no origin"): \(String(describing: close))")
        }
    }

    @Test("Hostile: the admin token in the session cookie (either name) signs nobody in: admin routes 403, reads anonymous, a WebSocket refused; as a bearer token it still works")
    func adminTokenIsNoCookie() async throws {
        let page = "https://app.example"
        let host = try await HostProcess.start(manifest: Self.manifest(name: "guarded"), env: ["PYLON_TRUSTED_ORIGINS": page], dev: false)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        _ = try await host.create("Note", #"{"title":"secret"}"#)
        for cookie in ["guarded_session=\(admin)", "pylon_session=\(admin)"] {
            let me = try await Self.send(host, "GET", "/api/auth/me", ["Cookie: \(cookie)", "Origin: \(page)"])
            #expect(me.status == 200 && me.json["is_admin"].bool == false && me.json["user_id"].isNull, "\(cookie): \(me.body)")
            let export = try await Self.send(host, "GET", "/api/export", ["Cookie: \(cookie)", "Origin: \(page)"])
            #expect(export.status == 403 || export.status == 401, "\(cookie): \(export.status) \(export.body)")
            let notes = try await Self.send(host, "GET", "/api/entities/Note", ["Cookie: \(cookie)", "Origin: \(page)"])
            #expect(!notes.body.contains("secret"), "\(cookie): read as the admin: \(notes.body)")
            let write = try await Self.send(host, "POST", "/api/entities/Note", body: #"{"title":"t"}"#, ["Cookie: \(cookie)", "Origin: \(page)"])
            #expect(write.status == 401 || write.status == 403, "\(cookie): \(write.status) \(write.body)")
            let ws = try await TestWebSocket.connect(port: host.port, headers: ["Cookie": cookie, "Origin": page])
            defer { ws.abort() }
            let close = try await ws.waitForClose()
            #expect(close?.code == 1008, "\(cookie): \(String(describing: close))")
        }
        // Next to a bearer token the cookie is not read at all; the bearer token decides.
        let bearer = try await Self.send(host, "GET", "/api/export", ["Authorization: Bearer \(admin)", "Cookie: guarded_session=\(admin)"])
        #expect(bearer.status == 200 && bearer.body.contains("secret"), "\(bearer.status) \(bearer.body.prefix(200))")
        let me = try await Self.send(host, "GET", "/api/auth/me", ["Authorization: Bearer \(admin)"])
        #expect(me.json["is_admin"].bool == true, "\(me.body)")
    }

    @Test("Bad settings stop the host at start-up with CONFIG_INVALID and the variable's name")
    func badSettings() async throws {
        let dir = try TestPaths.freshTempDir("pylon-cookie-bad")
        defer { TestPaths.removeTempDir(dir) }
        let manifest = dir.appendingPathComponent("pylon.manifest.json")
        try Data(Self.manifest(name: "bad").utf8).write(to: manifest)
        let cases: [([String: String], String)] = [
            (["PYLON_COOKIE_SAME_SITE": "sideways"], "PYLON_COOKIE_SAME_SITE"),
            (["PYLON_COOKIE_NAME": "my session;Domain=evil.example"], "PYLON_COOKIE_NAME"),
            (["PYLON_COOKIE_NAME": "a=b"], "PYLON_COOKIE_NAME"),
            (["PYLON_COOKIE_DOMAIN": "https://example.com/"], "PYLON_COOKIE_DOMAIN"),
            (["PYLON_COOKIE_DOMAIN": "example.com; Secure"], "PYLON_COOKIE_DOMAIN"),
            (["PYLON_COOKIE_SECURE": "maybe"], "PYLON_COOKIE_SECURE"),
            (["PYLON_COOKIE_NAME": "__Host-sid", "PYLON_COOKIE_DOMAIN": "example.com"], "__Host-"),
        ]
        for (env, named) in cases {
            let host = ServedHost(directory: dir, manifestPath: manifest.path, dbPath: dir.appendingPathComponent("app.db").path, environment: env)
            let run = try await host.launchExpectingExit()
            #expect(run.exited && run.status != 0, "\(env) started: \(run.log.suffix(400))")
            #expect(run.log.contains("CONFIG_INVALID") && run.log.contains(named), "\(env): \(run.log.suffix(400))")
        }
    }

    @Test("Over-long names stop the host with CONFIG_INVALID saying what to do: PYLON_COOKIE_NAME over 64 characters, or a default name made from a long manifest name; 64 starts")
    func overlongNames() async throws {
        let dir = try TestPaths.freshTempDir("pylon-cookie-long")
        defer { TestPaths.removeTempDir(dir) }
        let short = dir.appendingPathComponent("short.json"), long = dir.appendingPathComponent("long.json")
        try Data(Self.manifest(name: "short").utf8).write(to: short)
        try Data(Self.manifest(name: String(repeating: "app", count: 20)).utf8).write(to: long) // app…app_session: 68
        let cases: [(URL, [String: String], String)] = [
            (short, ["PYLON_COOKIE_NAME": String(repeating: "s", count: 65)], "PYLON_COOKIE_NAME is 65 characters long; a session cookie name may have at most 64"),
            (short, ["PYLON_COOKIE_NAME": String(repeating: "s", count: 5000)], "PYLON_COOKIE_NAME is 5000 characters long"),
            (long, [:], "is 68 characters long, over the 64 a cookie name may have: set PYLON_COOKIE_NAME"),
        ]
        for (manifest, env, message) in cases {
            let host = ServedHost(directory: dir, manifestPath: manifest.path, dbPath: dir.appendingPathComponent("app.db").path, environment: env)
            let run = try await host.launchExpectingExit()
            #expect(run.exited && run.status != 0, "\(env) started: \(run.log.suffix(400))")
            #expect(run.log.contains("CONFIG_INVALID") && run.log.contains(message), "\(env): \(run.log.suffix(400))")
            #expect(run.log.count < 4000, "the log does not repeat a huge name: \(run.log.count) characters")
        }
        // The long manifest name serves once a short cookie name is configured, and 64 is allowed.
        for name in ["sid", String(repeating: "s", count: 64)] {
            let host = try await HostProcess.start(manifest: Self.manifest(name: String(repeating: "app", count: 20)), env: ["PYLON_COOKIE_NAME": name])
            defer { host.stop() }
            let (signIn, _, _) = try await Self.register(host, "cy@example.com", origin: host.baseURL)
            #expect(signIn.cookie(name) != nil, "\(signIn.cookies)")
        }
    }

    @Test("Units: default names, valid names, reading order, settings and how they resolve")
    func units() throws {
        #expect(SessionCookie.defaultName(forApp: "Café App/2") == "Caf__App_2_session")
        #expect(SessionCookie.defaultName(forApp: "my-app_1") == "my-app_1_session")
        #expect(SessionCookie.defaultName(forApp: "") == "pylon_session")
        #expect(SessionCookie.isValidName("__Host-sid") && !SessionCookie.isValidName("a b") && !SessionCookie.isValidName("a;b")
                && !SessionCookie.isValidName("") && !SessionCookie.isValidName("é") && !SessionCookie.isValidName(String(repeating: "a", count: 65))
                && SessionCookie.isValidName(String(repeating: "a", count: 64)))

        let app = SessionCookie(name: "app_session", secure: false)
        let configuredWins = app.token(inCookieHeaders: ["pylon_session=old", "a=1; app_session=new"])
        #expect(configuredWins?.token == "new" && configuredWins?.legacy == false)
        let legacy = app.token(inCookieHeaders: ["app_session=; pylon_session=old"])
        #expect(legacy?.token == "old" && legacy?.legacy == true)
        #expect(app.token(inCookieHeaders: ["app_session", "x=app_session=1"]) == nil)
        #expect(SessionCookie().token(inCookieHeaders: ["pylon_session=t"])?.legacy == false)
        #expect(SessionCookie().legacyReadName == nil && SessionCookie().clearingLegacy == nil)

        let given = try SessionCookieSettings.fromEnvironment(["PYLON_COOKIE_DOMAIN": " .Sub.Example.com ", "PYLON_COOKIE_SAME_SITE": "Strict"])
        #expect(given.domain == "sub.example.com" && given.sameSite == .strict && given.name == nil && given.secure == nil)
        #expect(try given.resolve(appName: "x", dev: true) == SessionCookie(name: "x_session", domain: "sub.example.com", secure: false, sameSite: .strict))
        #expect(try given.resolve(appName: "x", dev: false).secure)
        var none = SessionCookieSettings()
        none.sameSite = .none
        none.secure = false
        #expect(try none.resolve(appName: "x", dev: true).secure, "SameSite=None forces Secure")
        none.sameSite = .lax
        none.name = "__Host-x"
        #expect(try none.resolve(appName: "x", dev: true).secure, "a __Host- name forces Secure")
        for bad in ["-bad.example", "a..b", "exa mple.com", "example.com:443", "ex_ample.com"] {
            #expect(SessionCookieSettings.domain(bad) == nil, "\(bad)")
        }
        #expect(try HostConfig.fromEnvironment(["PYLON_COOKIE_NAME": "sid"]).cookie.name == "sid")
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_COOKIE_SAME_SITE": "off"]) }
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_COOKIE_NAME": String(repeating: "a", count: 65)]) }
        #expect(throws: HostError.self) { try SessionCookieSettings().resolve(appName: String(repeating: "a", count: 57), dev: false) }
        #expect(try SessionCookieSettings().resolve(appName: String(repeating: "a", count: 56), dev: false).name.count == 64)
    }
}
