import Foundation
import Testing
import PylonTestPorts

/// A real OpenID provider for the tests: `oidc-provider-mock` (PyPI; Authlib, discovery,
/// RS256 JWKS, PKCE, refresh tokens) on a free loopback port. Its users: alice (verified
/// email), bob (alice's email, unverified by the provider) and carol.
final class OIDCMock: @unchecked Sendable {
    let port: Int
    let process: Process
    var issuer: String { "http://127.0.0.1:\(port)" }

    init() async throws {
        port = try freeLoopbackPort()
        let users = [#"{"sub":"alice","email":"alice@example.com","email_verified":true,"name":"Alice"}"#,
                     #"{"sub":"bob","email":"Alice@Example.com","email_verified":false,"name":"Bob"}"#,
                     #"{"sub":"carol","email":"carol@example.com","email_verified":true,"name":"Carol"}"#]
        process = try await startLoopbackServer(["python3", "-m", "oidc_provider_mock", "-p", String(port)] + users.flatMap { ["--user-claims", $0] },
                                                port: port, what: "oidc-provider-mock (make test installs it with pip)")
    }

    func stop() { stopServer(process) }
}

/// OAuth / OpenID sign-in end to end: the release host with libPylonAuthOAuth.so, a real
/// OpenID provider and a browser that follows the redirects by hand, keeping its cookies
/// (Tests/Fixtures/oauth/browser.py, httpx).
@Suite("OAuth: a real OpenID provider, the browser and JSON flows, PKCE, nonce, state bound to the browser, account links (black-box)")
struct OAuthTests {
    static let manifest = """
    {"manifest_version": 1, "name": "oauth", "version": "1",
     "entities": [
       {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "displayName", "type": "string", "optional": true, "unique": false},
          {"name": "emailVerified", "type": "bool", "optional": true, "unique": false},
          {"name": "createdAt", "type": "datetime", "optional": true, "unique": false}], "indexes": []}],
     "routes": [], "policies": []}
    """
    static var stores: [TestStore] { TestStore.all.filter { $0.name == "sqlite" || $0.name == "postgres" } }

    static func env(_ mock: OIDCMock) throws -> [String: String] {
        [
            "PYLON_OAUTH_MOCK_CLIENT_ID": "pylon-test", "PYLON_OAUTH_MOCK_CLIENT_SECRET": "s3cret", "PYLON_OAUTH_MOCK_OIDC_ISSUER": mock.issuer,
            // A second provider at the same issuer: another client, so another app to the provider.
            "PYLON_OAUTH_OTHER_CLIENT_ID": "pylon-other", "PYLON_OAUTH_OTHER_CLIENT_SECRET": "s3cret", "PYLON_OAUTH_OTHER_OIDC_ISSUER": mock.issuer,
            "PYLON_OAUTH_DOWN_CLIENT_ID": "pylon-down", "PYLON_OAUTH_DOWN_OIDC_ISSUER": "http://127.0.0.1:\(try freeLoopbackPort())",
            "PYLON_AUTH_ENCRYPTION_KEY": String(repeating: "ab", count: 32),
        ]
    }

    /// Runs one scenario of the browser; its JSON report.
    static func browse(_ host: HostProcess, _ scenario: String, provider: String = "mock", sub: String = "alice", _ extra: [String] = []) async throws -> Any? {
        let script = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/oauth/browser.py").path
        let r = try await TestCommand.run("/usr/bin/env", ["python3", script, host.baseURL, scenario, provider, sub] + extra, timeout: 120)
        guard r.status == 0 else { throw TestSetupError(description: "browser.py \(scenario) exited \(r.status):\n\(r.stdout)\n\(r.stderr)") }
        return try TestJSON.parse(r.stdout)
    }

    static func query(_ url: String) -> [String: String] {
        var out: [String: String] = [:]
        for item in URLComponents(string: url)?.queryItems ?? [] { out[item.name] = item.value ?? "" }
        return out
    }

    @Test("Sign-in: the browser flow sets a session and redirects; the JSON flow, a second provider and a refresh reach the same user", arguments: stores)
    func signIn(_ store: TestStore) async throws {
        let mock = try await OIDCMock()
        defer { mock.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: try Self.env(mock), store: store)
        defer { host.stop() }

        let providers = try await host.request("GET", "/api/auth/providers").json.items.compactMap { $0["provider"].string }
        #expect(providers == ["down", "mock", "other"], "\(providers)")

        let flow = try await Self.browse(host, "browser")
        #expect(flow["login_status"].int == 302)
        let authorize = Self.query(flow["authorize_url"].string ?? "")
        #expect(authorize["code_challenge_method"] == "S256" && authorize["code_challenge"]?.count == 43, "PKCE: \(authorize)")
        #expect(authorize["nonce"] != nil && authorize["state"]?.count == 43 && authorize["client_id"] == "pylon-test", "\(authorize)")
        #expect(flow["final_status"].int == 302 && flow["location"].string == "/done", "\(String(describing: flow))")
        let cookies = (flow["set_cookie"] as? [Any])?.compactMap { $0 as? String } ?? []
        #expect(cookies.contains { $0.hasPrefix("oauth_session=pylon_") && $0.contains("HttpOnly") }, "\(cookies)")
        #expect(cookies.contains { $0.hasPrefix("pylon_oauth_binding=;") && $0.contains("Max-Age=0") }, "the binding cookie is cleared: \(cookies)")
        let me = flow["session"]["body"]
        #expect(flow["session"]["status"].int == 200 && me["user"]["email"].string == "alice@example.com", "\(String(describing: flow["session"]))")
        #expect(me["user"]["displayName"].string == "Alice" && me["user"]["emailVerified"].bool == true, "\(String(describing: me))")
        let alice = me["user"]["id"].string

        let viaJSON = try await Self.browse(host, "json")
        #expect(viaJSON["status"].int == 200 && viaJSON["body"]["user_id"].string == alice, "the link finds the same user: \(String(describing: viaJSON))")
        #expect(viaJSON["body"]["provider"].string == "mock" && viaJSON["body"]["token"].string?.hasPrefix("pylon_") == true)

        let bare = (viaJSON["set_cookie"] as? [Any])?.compactMap { $0 as? String } ?? []
        #expect(!bare.contains { $0.hasPrefix("oauth_session=") }, "no page, no cookie: \(bare)")
        let fromPage = try await Self.browse(host, "json-page")
        let pageCookies = (fromPage["set_cookie"] as? [Any])?.compactMap { $0 as? String } ?? []
        #expect(fromPage["body"]["user_id"].string == alice && pageCookies.contains { $0.hasPrefix("oauth_session=pylon_") },
                "a page's JSON sign-in gets the session cookie too: \(String(describing: fromPage))")

        let other = try await Self.browse(host, "json", provider: "other")
        #expect(other["body"]["user_id"].string == alice, "a verified email links a second provider to the same user: \(String(describing: other))")

        let carol = try await Self.browse(host, "json", sub: "carol")
        #expect(carol["status"].int == 200 && carol["body"]["user_id"].string != alice, "\(String(describing: carol))")

        let refreshed = try await Self.browse(host, "refresh")
        #expect(refreshed["status"].int == 200 && refreshed["body"]["access_token"].string?.isEmpty == false, "\(String(describing: refreshed))")
        #expect(refreshed["body"]["provider"].string == "mock")

        let users = try await host.request("GET", "/api/entities/User?limit=100", token: HostProcess.adminToken).json["data"].items
        #expect(users.count == 2, "alice once (three links), carol: \(users)")
        if store.name == "sqlite" {
            let r = try await TestCommand.run("/usr/bin/sqlite3", [host.storeFile ?? host.dbPath, "SELECT provider_id, access_token, refresh_token FROM _pylon_accounts"])
            #expect(r.stdout.split(separator: "\n").count == 3, "\(r.stdout)")
            #expect(r.stdout.split(separator: "\n").allSatisfy { $0.split(separator: "|").dropFirst().allSatisfy { $0.hasPrefix("v1.") } },
                    "provider tokens are stored encrypted: \(r.stdout)")
            let states = try await TestCommand.run("/usr/bin/sqlite3", [host.storeFile ?? host.dbPath, "SELECT COUNT(*) FROM _pylon_oauth_state"])
            #expect(states.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "every state was used up")
        }
    }

    @Test("Hostile: a replayed or foreign state, a swapped PKCE verifier, a denial, an unverified email, untrusted callbacks, a provider that is down", arguments: stores)
    func hostile(_ store: TestStore) async throws {
        let mock = try await OIDCMock()
        defer { mock.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: try Self.env(mock), store: store)
        defer { host.stop() }

        let replay = try await Self.browse(host, "replay")
        #expect(replay["first"]["location"].string == "/done")
        #expect(replay["status"].int == 403 && replay["body"]["error"]["code"].string == "OAUTH_INVALID_STATE", "\(String(describing: replay))")

        let foreign = try await Self.browse(host, "other-browser")
        #expect(foreign["status"].int == 403 && foreign["body"]["error"]["code"].string == "OAUTH_INVALID_STATE", "\(String(describing: foreign))")
        #expect(foreign["owner_status"].int == 403, "a state tried from another browser is used up")

        let swapped = try await Self.browse(host, "swap-verifier")
        #expect(swapped["status"].int == 302)
        // The code was issued for A's challenge and nonce, and B's flow holds another
        // verifier and nonce: the provider refuses the verifier, or the id_token's nonce
        // gives the swap away (this mock checks no verifier) — no session either way.
        let failure = Self.query(swapped["location"].string ?? "")
        #expect(swapped["location"].string?.hasPrefix("/failed?") == true
                && ["OAUTH_TOKEN_EXCHANGE_FAILED", "OAUTH_ID_TOKEN_INVALID"].contains(failure["oauth_error"] ?? ""),
                "a code finished with another flow's verifier and nonce: \(String(describing: swapped))")

        let denied = try await Self.browse(host, "denied")
        #expect(Self.query(denied["location"].string ?? "")["oauth_error"] == "OAUTH_DENIED", "\(String(describing: denied))")

        _ = try await Self.browse(host, "json")  // alice exists
        let bob = try await Self.browse(host, "browser", sub: "bob")
        #expect(Self.query(bob["location"].string ?? "")["oauth_error"] == "OAUTH_EMAIL_NOT_VERIFIED",
                "an unverified email never takes over an account: \(String(describing: bob))")
        #expect(bob["session"]["body"]["user"]["email"].string == nil, "bob got no session: \(String(describing: bob["session"]))")

        let untrusted = try await Self.browse(host, "start", ["https://evil.example/steal"])
        #expect(untrusted["status"].int == 403 && untrusted["body"]["error"]["code"].string == "UNTRUSTED_REDIRECT", "\(String(describing: untrusted))")
        for callback in ["//evil.example/x", "https://localhost:3000.evil.example/", "javascript:alert(1)", "/done\r\nSet-Cookie: x=1",
                         "http://localhost:5173/a\nb"] {
            let r = try await Self.browse(host, "start", [callback])
            #expect(r["status"].int == 403, "\(callback): \(String(describing: r))")
        }
        let devOrigin = try await Self.browse(host, "start", ["http://localhost:5173/app"])
        #expect(devOrigin["status"].int == 302, "Pylon's development origins are trusted in --dev: \(String(describing: devOrigin))")

        let noCallback = try await host.request("GET", "/api/auth/login/mock")
        #expect(noCallback.status == 400 && noCallback.json["error"]["code"].string == "MISSING_CALLBACK", "\(noCallback.body)")
        let unknown = try await host.request("GET", "/api/auth/login/nope?callback=/x")
        #expect(unknown.status == 404 && unknown.json["error"]["code"].string == "PROVIDER_NOT_FOUND", "\(unknown.body)")
        let down = try await host.request("GET", "/api/auth/login/down?callback=/x")
        #expect(down.status == 502 && down.json["error"]["code"].string == "OAUTH_PROVIDER_UNREACHABLE", "\(down.body)")

        let noState = try await host.request("GET", "/api/auth/callback/mock?code=x")
        #expect(noState.status == 403 && noState.json["error"]["code"].string == "OAUTH_INVALID_STATE")
        let made = try await host.request("POST", "/api/auth/callback/mock", json: #"{"state":"made-up","code":"x"}"#)
        #expect(made.status == 403 && made.json["error"]["code"].string == "OAUTH_INVALID_STATE", "\(made.body)")
        let refreshAnon = try await host.request("POST", "/api/auth/oauth/refresh/mock")
        #expect(refreshAnon.status == 401, "\(refreshAnon.body)")
        let user = try await host.mintSession("not-linked")
        let notLinked = try await host.request("POST", "/api/auth/oauth/refresh/mock", token: user)
        #expect(notLinked.status == 404 && notLinked.json["error"]["code"].string == "ACCOUNT_NOT_FOUND", "\(notLinked.body)")

        // The provider goes away between the consent and the callback.
        let gone = try await Self.browse(host, "provider-dies", ["\(mock.process.processIdentifier)"])
        #expect(Self.query(gone["location"].string ?? "")["oauth_error"] == "OAUTH_TOKEN_EXCHANGE_FAILED", "\(String(describing: gone))")
    }

    @Test("Starting sign-ins is counted per address (each stores a state): past the verify bucket, 429 with Retry-After and no state")
    func startsAreLimited() async throws {
        let mock = try await OIDCMock()
        defer { mock.stop() }
        var env = try Self.env(mock)
        env["PYLON_AUTH_RATE_LIMIT_VERIFY"] = "3"
        let host = try await HostProcess.start(manifest: Self.manifest, env: env)
        defer { host.stop() }
        for _ in 0..<3 {
            let r = try await host.request("GET", "/api/auth/login/mock?callback=/done")
            #expect(r.status == 200 && r.json["state"].string != nil, "\(r.body)")
        }
        let over = try await host.rawRequest("GET", "/api/auth/login/mock?callback=/done")
        #expect(over.status == 429 && over.headers["retry-after"] != nil, "\(over.status) \(over.body)")
        if let file = host.storeFile {
            let states = try await TestCommand.run("/usr/bin/sqlite3", [file, "SELECT COUNT(*) FROM _pylon_oauth_state"])
            #expect(states.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "only the counted starts stored a state: \(states.stdout)")
        }
    }

    @Test("Outside --dev a configured provider needs PYLON_AUTH_ENCRYPTION_KEY; a malformed key is refused")
    func encryptionKeyRequired() async throws {
        let mock = try await OIDCMock()
        defer { mock.stop() }
        for (key, expected) in [(nil, "PYLON_AUTH_ENCRYPTION_KEY is not set"), ("short", "64 hex digits")] as [(String?, String)] {
            var env = try Self.env(mock)
            env["PYLON_AUTH_ENCRYPTION_KEY"] = key
            do {
                let host = try await HostProcess.start(manifest: Self.manifest, env: env, dev: false)
                host.stop()
                Issue.record("the host started without a usable encryption key (\(key ?? "none"))")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
    }

    @Test("Apple: the client secret is minted (ES256) from PYLON_OAUTH_APPLE_TEAM_ID, _KEY_ID and _PRIVATE_KEY (the .p8 PEM, \\n escapes allowed); a key that is not one, or a missing part, stops the start naming the variables")
    func appleClientSecret() async throws {
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        let out = Pipe()
        openssl.standardOutput = out
        try openssl.run()
        let pem = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        openssl.waitUntilExit()
        #expect(pem.contains("BEGIN PRIVATE KEY"), "\(pem)")
        let apple = ["PYLON_OAUTH_APPLE_CLIENT_ID": "com.example.web", "PYLON_OAUTH_APPLE_TEAM_ID": "TEAM123456", "PYLON_OAUTH_APPLE_KEY_ID": "KEY1234567"]
        let host = try await HostProcess.start(manifest: Self.manifest,
                                               env: apple.merging(["PYLON_OAUTH_APPLE_PRIVATE_KEY": pem.replacingOccurrences(of: "\n", with: "\\n")]) { $1 },
                                               dev: true)
        defer { host.stop() }
        let providers = try await host.request("GET", "/api/auth/providers").json.items.compactMap { $0["provider"].string }
        #expect(providers.contains("apple"), "\(providers)")
        for env in [apple.merging(["PYLON_OAUTH_APPLE_PRIVATE_KEY": "not a key"]) { $1 }, apple] {
            do {
                let bad = try await HostProcess.start(manifest: Self.manifest, env: env, dev: true)
                bad.stop()
                Issue.record("the host started with \(env.keys.sorted())")
            } catch {
                #expect("\(error)".contains("PYLON_OAUTH_APPLE_PRIVATE_KEY"), "\(error)")
            }
        }
    }
}
