import Foundation
import PylonTestPorts
import Testing
@testable import PylonCore
#if canImport(Glibc)
import Glibc
#endif

/// Sign-in by email through the real host and the real AuthMagicCode plugin, with a real
/// SMTP server (aiosmtpd) receiving the mail: the test reads the code or link out of the
/// delivered message. On SQLite and Postgres (the codes' state lives in the store).
@Suite("Magic codes, links, email verification and password reset (black-box, real SMTP server, SQLite and Postgres)")
struct MagicCodeTests {
    static let manifest = """
    {"manifest_version": 1, "name": "mailapp", "version": "0.1.0",
     "entities": [
       {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "displayName", "type": "string", "optional": true, "unique": false},
          {"name": "emailVerified", "type": "string", "optional": true, "unique": false},
          {"name": "createdAt", "type": "string", "optional": true, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [{"name": "users", "entity": "User", "allowRead": "auth.userId != null", "allowInsert": "false",
                   "allowUpdate": "auth.userId == data.id", "allowDelete": "false"}]}
    """

    /// The manifest with `config` as the `auth.code` plugin's settings.
    static func manifest(codeConfig config: String) -> String { manifest(plugins: #"{"auth.code": \#(config)}"#) }

    /// The manifest with `plugins` as its `plugins` section.
    static func manifest(plugins: String) -> String {
        manifest.replacingOccurrences(of: #""routes": [],"#, with: #""routes": [], "plugins": \#(plugins),"#)
    }

    /// Mail by SMTP to `smtp`, plus `extra`. (The harness relaxes the auth buckets; the
    /// bucket test sets Pylon's.)
    static func env(_ smtp: MailSink, _ extra: [String: String] = [:]) -> [String: String] {
        extra.merging(["PYLON_EMAIL_PROVIDER": "smtp", "PYLON_SMTP_URL": "smtp://127.0.0.1:\(smtp.port)",
                       "PYLON_EMAIL_FROM": "Mail App <noreply@mailapp.test>", "PYLON_PUBLIC_URL": "http://app.test"]) { a, _ in a }
    }

    static func send(_ host: HostProcess, _ email: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/magic/send", json: #"{"email":\#(TestJSON.quote(email))}"#)
    }

    static func verify(_ host: HostProcess, _ email: String, _ code: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/magic/verify", json: #"{"email":\#(TestJSON.quote(email)),"code":\#(TestJSON.quote(code))}"#)
    }

    @Test("The code arrives by SMTP and signs in: a new user on first sign-in (email verified), the same user as a password account; replayed and cooled-down requests refused", arguments: [TestStore.sqlite, TestStore.postgres])
    func signIn(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp), dev: false, store: store)
        defer { host.stop() }
        let sent = try await Self.send(host, " Ada@Example.COM ")
        #expect(sent.status == 200 && sent.json["sent"].bool == true && sent.json["email"].string == "ada@example.com", "\(sent.body)")
        #expect(sent.json["dev_code"] == nil, "the code is never in the answer outside --dev: \(sent.body)")
        let mail = try await smtp.message(to: "ada@example.com")
        #expect(mail.contains("Subject: Your mailapp sign-in code"), "\(mail)")
        #expect(mail.contains("From: Mail App <noreply@mailapp.test>"), "\(mail)")
        let code = try #require(MailSink.code(in: mail), "\(mail)")
        let listed = try await host.request("GET", "/api/admin/auth/magic_codes", token: HostProcess.adminToken)
        #expect(listed.json.items.first?["email"].string == "ada@example.com" && listed.json.items.first?["purpose"].string == "magic_code", "\(listed.body)")
        #expect(!listed.body.contains(code), "the studio's listing has no code: \(listed.body)")

        let cooled = try await Self.send(host, "ada@example.com")
        #expect(cooled.status == 429 && cooled.json.errorCode == "RATE_LIMITED", "a second code within the cooldown: \(cooled.body)")
        #expect(cooled.json["error"]["hint"].string?.hasPrefix("Try again in") == true, "\(cooled.body)")
        #expect(smtp.messages(to: "ada@example.com").count == 1, "no second mail in the cooldown")

        let signed = try await Self.verify(host, "ADA@example.com", "\(code)")
        #expect(signed.status == 200, "\(signed.body)")
        let token = try #require(signed.json["token"].string, "\(signed.body)")
        let user = try #require(signed.json["user_id"].string)
        #expect(try await host.me(token) == user)
        let row = try await host.request("GET", "/api/entities/User/\(user)", token: HostProcess.adminToken)
        #expect(row.json["email"].string == "ada@example.com" && row.json["emailVerified"].string?.contains("T") == true, "\(row.body)")

        let replay = try await Self.verify(host, "ada@example.com", "\(code)")
        #expect(replay.status == 401 && replay.json.errorCode == "INVALID_CODE", "a used code: \(replay.body)")
        let stored = try await host.request("GET", "/api/entities/User", token: HostProcess.adminToken)
        #expect(stored.json["data"].items.count == 1, "one user: \(stored.body)")

        // A password account signs in by code as itself.
        let reg = try await PasswordAuthTests.register(host, "bob@example.com", "correct horse battery")
        let bob = try #require(reg.json["user_id"].string, "\(reg.body)")
        _ = try await Self.send(host, "bob@example.com")
        let bobCode = try #require(MailSink.code(in: try await smtp.message(to: "bob@example.com")))
        let bobIn = try await Self.verify(host, "bob@example.com", "\(bobCode)")
        #expect(bobIn.status == 200 && bobIn.json["user_id"].string == bob, "\(bobIn.body)")
    }

    @Test("Wrong codes: four get 401, the fifth kills the code (429), after which even the right code is refused; codes expire; the stored state holds no code", arguments: [TestStore.sqlite, TestStore.postgres])
    func wrongAndExpired(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp), dev: false, store: store)
        defer { host.stop() }
        _ = try await Self.send(host, "eve@example.com")
        let code = try #require(MailSink.code(in: try await smtp.message(to: "eve@example.com")))
        let wrong = code == "000000" ? "111111" : "000000"
        for i in 1...4 {
            let r = try await Self.verify(host, "eve@example.com", "\(wrong)")
            #expect(r.status == 401 && r.json.errorCode == "INVALID_CODE", "wrong code \(i): \(r.body)")
        }
        let fifth = try await Self.verify(host, "eve@example.com", "\(wrong)")
        #expect(fifth.status == 429 && fifth.json.errorCode == "RATE_LIMITED", "the fifth wrong code: \(fifth.body)")
        let right = try await Self.verify(host, "eve@example.com", "\(code)")
        #expect(right.status == 429, "the right code after the limit: \(right.body)")
        if let file = host.storeFile {
            let dump = try await TestCommand.run("/usr/bin/env", ["sqlite3", file, "SELECT state FROM _pylon_auth_codes"])
            #expect(!dump.stdout.isEmpty && !dump.stdout.contains(code), "the state holds a hash, not the code: \(dump.stdout)")
        }

        let short = try await HostProcess.start(manifest: Self.manifest(codeConfig: #"{"code_ttl_secs": 1}"#), env: Self.env(smtp),
                                                dev: false, store: store)
        defer { short.stop() }
        _ = try await Self.send(short, "mallory@example.com")
        let old = try #require(MailSink.code(in: try await smtp.message(to: "mallory@example.com")))
        try await Task.sleep(for: .seconds(3))
        let late = try await Self.verify(short, "mallory@example.com", "\(old)")
        #expect(late.status == 401 && late.json.errorCode == "INVALID_CODE", "an expired code: \(late.body)")
    }

    @Test("Password reset by email: unknown and known addresses get the same answer; the link sets a new password once, ends every session, and a weak password does not burn it", arguments: [TestStore.sqlite, TestStore.postgres])
    func passwordReset(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp), dev: false, store: store)
        defer { host.stop() }
        let reg = try await PasswordAuthTests.register(host, "carol@example.com", "old password here")
        let carol = try #require(reg.json["user_id"].string, "\(reg.body)")
        let oldSession = try #require(reg.json["token"].string)

        let unknown = try await host.request("POST", "/api/auth/password/reset/request", json: #"{"email":"nobody@example.com"}"#)
        let known = try await host.request("POST", "/api/auth/password/reset/request", json: #"{"email":"Carol@Example.com"}"#)
        #expect(known.status == 200 && known.json["sent"].bool == true, "\(known.body)")
        #expect(unknown.status == known.status && unknown.body == known.body, "no account enumeration: \(unknown.body) vs \(known.body)")
        let mail = try await smtp.message(to: "carol@example.com")
        let token = try #require(MailSink.resetToken(in: mail), "\(mail)")
        #expect(mail.contains("http://app.test/reset-password?token="), "\(mail)")

        func complete(_ password: String) async throws -> (status: Int, body: String, json: Any?) {
            try await host.request("POST", "/api/auth/password/reset/complete",
                                   json: #"{"token":\#(TestJSON.quote(token)),"newPassword":\#(TestJSON.quote(password))}"#)
        }
        let weak = try await complete("short")
        #expect(weak.status == 400 && weak.json.errorCode == "WEAK_PASSWORD", "\(weak.body)")
        let done = try await complete("brand new password")
        #expect(done.status == 200 && done.json["reset"].bool == true && done.json["user_id"].string == carol, "\(done.body)")
        let fresh = try #require(done.json["token"].string)
        #expect(try await host.me(fresh) == carol)
        #expect(try await host.me(oldSession) == nil, "the reset ended the earlier session")
        let replay = try await complete("another new password")
        #expect(replay.status == 401 && replay.json.errorCode == "INVALID_TOKEN", "a used link: \(replay.body)")
        let oldLogin = try await PasswordAuthTests.login(host, "carol@example.com", "old password here")
        #expect(oldLogin.status == 401, "\(oldLogin.body)")
        let newLogin = try await PasswordAuthTests.login(host, "carol@example.com", "brand new password")
        #expect(newLogin.status == 200 && newLogin.json["user_id"].string == carol, "\(newLogin.body)")
        let forged = try await host.request("POST", "/api/auth/password/reset/complete",
                                            json: #"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","newPassword":"brand new password"}"#)
        #expect(forged.status == 401 && forged.json.errorCode == "INVALID_TOKEN", "\(forged.body)")
        // Only the account's address got mail.
        #expect(smtp.messages(to: "nobody@example.com").isEmpty)
    }

    @Test("A magic link opened in a browser sets the cookie and redirects, once; email verification for a signed-in user")
    func linkAndVerification() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp, ["PYLON_DASHBOARD_URL": "/app"]),
                                               dev: false)
        defer { host.stop() }
        let sent = try await host.request("POST", "/api/auth/magic-link/send", json: #"{"email":"dan@example.com"}"#)
        #expect(sent.status == 200 && sent.body == #"{"sent":true}"#, "\(sent.body)")
        let mail = try await smtp.message(to: "dan@example.com")
        let token = try #require(MailSink.linkToken(in: mail, path: "/api/auth/magic-link/verify"), "\(mail)")
        let port = host.port
        @Sendable func open() throws -> (status: Int, headers: [String: String]) {
            let s = try TestSocket.connect(port: port)
            defer { s.close() }
            try s.send("GET /api/auth/magic-link/verify?token=\(token) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let head = try readHTTPHead(s)
            return (head.status, head.headers)
        }
        let first = try await onThread { try open() }
        #expect(first.status == 302 && first.headers["location"] == "/app", "\(first)")
        let cookie = try #require(first.headers["set-cookie"], "\(first)")
        #expect(cookie.hasPrefix("mailapp_session=pylon_") && cookie.contains("HttpOnly"), "\(cookie)")
        let again = try await onThread { try open() }
        #expect(again.status == 401, "a used link: \(again)")

        let reg = try await PasswordAuthTests.register(host, "erin@example.com", "long enough password")
        let session = try #require(reg.json["token"].string, "\(reg.body)")
        let ask = try await host.request("POST", "/api/auth/email/send-verification", token: session)
        #expect(ask.status == 200 && ask.json["email"].string == "erin@example.com", "\(ask.body)")
        let code = try #require(MailSink.code(in: try await smtp.message(to: "erin@example.com")))
        let bad = try await host.request("POST", "/api/auth/email/verify", json: #"{"code":"not it"}"#, token: session)
        #expect(bad.status == 401 && bad.json.errorCode == "INVALID_CODE", "\(bad.body)")
        let ok = try await host.request("POST", "/api/auth/email/verify", json: #"{"code":"\#(code)"}"#, token: session)
        #expect(ok.status == 200 && ok.json["verified"].bool == true && ok.json["emailVerified"].string != nil, "\(ok.body)")
        let anonymous = try await host.request("POST", "/api/auth/email/send-verification")
        #expect(anonymous.status == 401, "\(anonymous.body)")
    }

    @Test("SMTP down or refusing: 500 EMAIL_SEND_FAILED and no code left behind (no cooldown); the SEND bucket counts per address and per email")
    func failuresAndBuckets() async throws {
        let refusing = try await MailSink.start(refuse: true)
        defer { refusing.stop() }
        let closed = try freeLoopbackPort()
        for url in ["smtp://127.0.0.1:\(closed)", "smtp://127.0.0.1:\(refusing.port)"] {
            let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_EMAIL_PROVIDER": "smtp", "PYLON_SMTP_URL": url],
                                                   dev: false)
            defer { host.stop() }
            for attempt in 1...2 {
                let r = try await Self.send(host, "frank@example.com")
                #expect(r.status == 500 && r.json.errorCode == "EMAIL_SEND_FAILED", "\(url) attempt \(attempt): \(r.body)")
            }
        }
        // Pylon's SEND bucket: 3 per minute per address.
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp, ["PYLON_AUTH_RATE_LIMIT_SEND": "3,10"]), dev: false)
        defer { host.stop() }
        var statuses: [Int] = []
        for i in 0..<4 { statuses.append(try await Self.send(host, "user\(i)@example.com").status) }
        #expect(statuses == [200, 200, 200, 429], "\(statuses)")
    }

    @Test("Pylon's HTTP email APIs: SendGrid's and the webhook's bodies with the bearer key reach the endpoint; an API that answers 500 is EMAIL_SEND_FAILED")
    func httpProviders() async throws {
        let api = try await MailSink.startHTTP()
        defer { api.stop() }
        let endpoint = "http://127.0.0.1:\(api.port)/send"
        let sendgrid = try await HostProcess.start(manifest: Self.manifest, env: [
            "PYLON_EMAIL_PROVIDER": "sendgrid", "PYLON_EMAIL_API_KEY": "sg-key", "PYLON_EMAIL_ENDPOINT": endpoint,
            "PYLON_EMAIL_FROM": "noreply@mailapp.test", "PYLON_EMAIL_TEMPLATE_MAGIC_CODE_SUBJECT": "Code {{code}} for {{email}}"], dev: false)
        defer { sendgrid.stop() }
        let sent = try await Self.send(sendgrid, "hal@example.com")
        #expect(sent.status == 200, "\(sent.body)")
        let first = try await api.posts(count: 1)[0]
        #expect(first["authorization"].string == "Bearer sg-key" && first["path"].string == "/send", "\(String(describing: first))")
        let body = first["body"]
        #expect(body["personalizations"][0]["to"][0]["email"].string == "hal@example.com", "\(String(describing: body))")
        #expect(body["from"]["email"].string == "noreply@mailapp.test")
        let subject = try #require(body["subject"].string)
        #expect(subject.hasPrefix("Code ") && subject.hasSuffix(" for hal@example.com"), "the subject template from the environment: \(subject)")
        let code = String(subject.dropFirst(5).prefix(6))
        #expect(body["content"][0]["type"].string == "text/plain" && body["content"][0]["value"].string?.contains(code) == true)
        #expect(try await Self.verify(sendgrid, "hal@example.com", code).status == 200)

        let webhook = try await HostProcess.start(manifest: Self.manifest, env: [
            "PYLON_EMAIL_PROVIDER": "webhook", "PYLON_EMAIL_ENDPOINT": endpoint], dev: false)
        defer { webhook.stop() }
        _ = try await webhook.request("POST", "/api/auth/magic-link/send", json: #"{"email":"ivy@example.com"}"#)
        let second = try await api.posts(count: 2)[1]
        #expect(second["body"]["to"].string == "ivy@example.com" && second["body"]["from"].string == "noreply@pylonsync.com", "\(String(describing: second))")
        #expect(second["body"]["body"].string?.contains("/api/auth/magic-link/verify?token=") == true && second["body"]["subject"].string != nil)

        let failing = try await MailSink.startHTTP(status: 500)
        defer { failing.stop() }
        let broken = try await HostProcess.start(manifest: Self.manifest, env: [
            "PYLON_EMAIL_PROVIDER": "resend", "PYLON_EMAIL_API_KEY": "k", "PYLON_EMAIL_ENDPOINT": "http://127.0.0.1:\(failing.port)/emails"], dev: false)
        defer { broken.stop() }
        let refused = try await Self.send(broken, "jo@example.com")
        #expect(refused.status == 500 && refused.json.errorCode == "EMAIL_SEND_FAILED", "\(refused.body)")
        let resend = try await failing.posts(count: 1)[0]["body"]
        #expect(resend["to"][0].string == "jo@example.com" && resend["text"].string != nil, "Resend's body: \(String(describing: resend))")
    }

    @Test("Two hosts on one Postgres: a code sent through one signs in through the other; 20 wrong guesses at once across both count exactly to the limit (four 401s), then even the right code is refused")
    func twoHostsOnePostgres() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let url = try await pg.freshDatabase()
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let shared = Self.manifest(plugins: #"{"store": {"use": "postgres", "url": "\#(url)"}}"#)
        let a = try await HostProcess.start(manifest: shared, env: Self.env(smtp), dev: false)
        defer { a.stop() }
        let b = try await HostProcess.start(manifest: shared, env: Self.env(smtp), dev: false)
        defer { b.stop() }

        _ = try await Self.send(a, "kim@example.com")
        let kim = try #require(MailSink.code(in: try await smtp.message(to: "kim@example.com")))
        let signed = try await Self.verify(b, "kim@example.com", kim)
        #expect(signed.status == 200, "\(signed.body)")
        let again = try await Self.send(b, "kim@example.com")
        #expect(again.status == 200, "the used code left no cooldown on the other host: \(again.body)")

        _ = try await Self.send(a, "lee@example.com")
        let code = try #require(MailSink.code(in: try await smtp.message(to: "lee@example.com")))
        let wrong = code == "000000" ? "111111" : "000000"
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<20 {
                group.addTask { try await Self.verify(i % 2 == 0 ? a : b, "lee@example.com", wrong).status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 401 }.count == 4 && statuses.filter { $0 == 429 }.count == 16, "\(statuses.sorted())")
        let right = try await Self.verify(b, "lee@example.com", code)
        #expect(right.status == 429, "the right code after the limit: \(right.body)")
    }

    @Test("Settings: Pylon's email variables reach the plugin; a wrong provider, scheme or missing key stops the host with a message naming the setting; an SMTP server off this machine must speak STARTTLS")
    func settings() async throws {
        let c = try HostConfig.fromEnvironment(["PYLON_EMAIL_TEMPLATE_MAGIC_CODE_BODY": "b", "PYLON_SMTP_URL": "smtp://h:25",
                                                "PYLON_EMAIL_HTTP_URL": "http://u", "PYLON_EMAIL_PROVIDER": "smtp"])
        let keys = Dictionary(c.authCodeOverrides.map { ($0.0, $0.1.stringValue ?? "") }) { a, _ in a }
        #expect(keys == ["template_magic_code_body": "b", "smtp_url": "smtp://h:25", "endpoint": "http://u", "provider": "smtp"], "\(keys)")

        for (env, says) in [(["PYLON_EMAIL_PROVIDER": "smtp", "PYLON_SMTP_URL": "http://127.0.0.1:25"], "PYLON_SMTP_URL"),
                            (["PYLON_EMAIL_PROVIDER": "carrier-pigeon"], "PYLON_EMAIL_PROVIDER"),
                            (["PYLON_EMAIL_PROVIDER": "sendgrid"], "PYLON_EMAIL_API_KEY"),
                            (["PYLON_EMAIL_PROVIDER": "webhook"], "PYLON_EMAIL_ENDPOINT")] {
            do {
                let host = try await HostProcess.start(manifest: Self.manifest, env: env, dev: false)
                host.stop()
                Issue.record("the host started with \(env)")
            } catch {
                #expect("\(error)".contains(says), "\(env): \(error)")
            }
        }
        let remote = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_EMAIL_PROVIDER": "smtp", "PYLON_SMTP_URL": "smtp://mail.invalid:25"],
                                                 dev: false)
        defer { remote.stop() }
        #expect(remote.log.contains("smtp to mail.invalid (STARTTLS required)"), "\(remote.log)")
        let r = try await Self.send(remote, "kay@example.com")
        #expect(r.status == 500 && r.json.errorCode == "EMAIL_SEND_FAILED", "\(r.body)")
    }

    @Test("STARTTLS: a server that insists on it gets the mail over TLS when its certificate is trusted (ca_file); an untrusted certificate is EMAIL_SEND_FAILED, never plain text")
    func startTLS() async throws {
        let dir = try TestPaths.freshTempDir("pylon-smtp-tls")
        defer { TestPaths.removeTempDir(dir) }
        let cert = dir.appendingPathComponent("cert.pem").path, key = dir.appendingPathComponent("key.pem").path
        let made = try await TestCommand.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                                              "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                                                              "-addext", "subjectAltName=IP:127.0.0.1"])
        #expect(made.status == 0, "\(made.stderr)")
        let smtp = try await MailSink.start(starttls: (cert, key))
        defer { smtp.stop() }
        let trusted = try await HostProcess.start(manifest: Self.manifest(codeConfig: #"{"ca_file": "\#(cert)"}"#), env: Self.env(smtp), dev: false)
        defer { trusted.stop() }
        let sent = try await Self.send(trusted, "lou@example.com")
        #expect(sent.status == 200, "\(sent.body)\n\(trusted.log.suffix(2000))")
        let code = try #require(MailSink.code(in: try await smtp.message(to: "lou@example.com")))
        #expect(try await Self.verify(trusted, "lou@example.com", code).status == 200)

        let untrusted = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp), dev: false)
        defer { untrusted.stop() }
        let refused = try await Self.send(untrusted, "mo@example.com")
        #expect(refused.status == 500 && refused.json.errorCode == "EMAIL_SEND_FAILED", "\(refused.body)")
        #expect(smtp.messages(to: "mo@example.com").isEmpty)
    }

    @Test("--dev echoes the code (console transport); with auth.code turned off every email route, and OAuth's, answers 501 CAPABILITY_UNAVAILABLE")
    func devAndStubs() async throws {
        let dev = try await HostProcess.start(manifest: Self.manifest, dev: true)
        defer { dev.stop() }
        let sent = try await Self.send(dev, "gina@example.com")
        let code = try #require(sent.json["dev_code"].string, "\(sent.body)")
        #expect(code.count == 6 && code.allSatisfy { $0.isNumber })
        #expect(dev.log.contains("gina@example.com"), "the console transport writes the mail to the log")
        let signed = try await Self.verify(dev, "gina@example.com", "\(code)")
        #expect(signed.status == 200, "\(signed.body)")

        let off = try await HostProcess.start(manifest: Self.manifest(plugins: #"{"auth.code": {"use": "none"}, "auth.oauth": {"use": "none"}}"#),
                                              dev: false)
        defer { off.stop() }
        for (method, path) in [("POST", "/api/auth/magic/send"), ("POST", "/api/auth/magic/verify"), ("POST", "/api/auth/magic-link/send"),
                               ("GET", "/api/auth/magic-link/verify"), ("POST", "/api/auth/email/verify"),
                               ("POST", "/api/auth/password/reset/request"), ("GET", "/api/auth/providers"), ("GET", "/api/auth/login/google")] {
            let r = try await off.request(method, path, json: method == "POST" ? #"{"email":"a@example.com"}"# : nil)
            #expect(r.status == 501 && r.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(method) \(path): \(r.status) \(r.body)")
        }
    }
}

/// A real mail server started by the test on a free loopback port: aiosmtpd (Tests/Fixtures/smtp/smtp_sink.py),
/// writing each accepted message to a file the test reads, or a stand-in HTTP email API (or
/// another stand-in HTTP service, `launch(fixture:)`).
final class MailSink: @unchecked Sendable {
    let port: Int
    let folder: URL
    private let process: Process

    private init(port: Int, folder: URL, process: Process) {
        self.port = port
        self.folder = folder
        self.process = process
    }

    static func start(refuse: Bool = false, starttls: (cert: String, key: String)? = nil) async throws -> MailSink {
        try await launch(fixture: "smtp/smtp_sink.py", (refuse ? ["--refuse"] : []) + (starttls.map { ["--starttls", $0.cert, $0.key] } ?? []))
    }

    /// A stand-in HTTP email API (Tests/Fixtures/smtp/http_mail_sink.py) answering `status`.
    static func startHTTP(status: Int = 202) async throws -> MailSink {
        try await launch(fixture: "smtp/http_mail_sink.py", [String(status)])
    }

    /// Starts Tests/Fixtures/`fixture` with a fresh folder (its first argument) and `args`;
    /// the script writes its port to <folder>/port.
    static func launch(fixture: String, _ args: [String] = []) async throws -> MailSink {
        let folder = try TestPaths.freshTempDir("pylon-fixture")
        let script = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/\(fixture)").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, folder.path] + args
        let log = folder.appendingPathComponent("server.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: log)
        p.standardError = try FileHandle(forWritingTo: log)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let portFile = folder.appendingPathComponent("port").path
        let port: Int = try await eventually("the mail server's port file (log: \((try? String(contentsOf: log, encoding: .utf8)) ?? ""))", timeout: 30) {
            if !p.isRunning { throw TestSetupError(description: "the mail server exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            return (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) }
        }
        return MailSink(port: port, folder: folder, process: p)
    }

    /// The requests the stand-in HTTP API got, oldest first, waiting (generously) for `count`.
    func posts(count: Int) async throws -> [Any?] {
        try await eventually("\(count) POSTs to the HTTP mail API", timeout: 30) { () -> [Any?]? in
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            guard names.count >= count else { return nil }
            return names.map { name -> Any? in
                (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)).flatMap { try? TestJSON.parse($0) }
            }
        }
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        TestPaths.removeTempDir(folder)
    }

    /// Every message delivered to `rcpt` so far, oldest first.
    func messages(to rcpt: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".eml") }.sorted()
        return names.compactMap { try? String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8) }
            .filter { $0.hasPrefix("X-Rcpt: \(rcpt)\r\n") }
    }

    /// The newest message to `rcpt`, waiting (generously) for one to arrive.
    func message(to rcpt: String) async throws -> String {
        try await eventually("a message to \(rcpt)", timeout: 30) { messages(to: rcpt).last }
    }

    /// The body of `mail` (after the blank line that ends the headers).
    static func body(_ mail: String) -> String {
        guard let r = mail.range(of: "\r\n\r\n") else { return mail }
        return String(mail[r.upperBound...])
    }

    /// The first run of exactly six digits in the body.
    static func code(in mail: String) -> String? {
        let chars = Array(body(mail))
        var i = 0
        while i < chars.count {
            guard chars[i].isASCII && chars[i].isNumber else { i += 1; continue }
            var j = i
            while j < chars.count && chars[j].isASCII && chars[j].isNumber { j += 1 }
            if j - i == 6 { return String(chars[i..<j]) }
            i = j
        }
        return nil
    }

    /// The `token` query value of the first URL in the body that contains `path`.
    static func linkToken(in mail: String, path: String) -> String? {
        for word in body(mail).split(whereSeparator: { $0.isWhitespace }) where word.contains(path) {
            return URLComponents(string: String(word))?.queryItems?.first { $0.name == "token" }?.value
        }
        return nil
    }

    static func resetToken(in mail: String) -> String? { linkToken(in: mail, path: "reset-password") }
}
