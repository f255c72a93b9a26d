import Foundation
import Testing

/// Changing a user's email through the real host, the AuthMagicCode plugin and a real SMTP
/// server (aiosmtpd): the link goes to the new address, the email changes only when it is
/// confirmed, and an address another user has is refused at both steps. SQLite and Postgres.
@Suite("Email change: request and confirm by a link to the new address (black-box, real SMTP server, SQLite and Postgres)")
struct EmailChangeTests {
    static func request(_ host: HostProcess, _ token: String, _ email: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/email/change/request", json: #"{"newEmail":\#(TestJSON.quote(email))}"#, token: token)
    }

    static func confirm(_ host: HostProcess, _ token: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/email/change/confirm", json: #"{"token":\#(TestJSON.quote(token))}"#)
    }

    static func email(_ host: HostProcess, _ token: String) async throws -> String? {
        try await host.request("GET", "/api/auth/session", token: token).json["user"]["email"].string
    }

    static func link(_ smtp: MailSink, _ to: String) async throws -> String {
        let mail = try await smtp.message(to: to)
        #expect(mail.contains("Subject: Confirm your new email for teams"), "\(mail)")
        return try #require(MailSink.linkToken(in: mail, path: "/api/auth/email/change/confirm"), "\(mail)")
    }

    @Test("The link goes to the new address; the email changes (verified) only on confirmation; taken addresses, replays and wrong tokens are refused", arguments: [TestStore.sqlite, TestStore.postgres])
    func changeEmail(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: OrgTests.manifest, env: MagicCodeTests.env(smtp).merging(ApiKeyTests.pepper) { a, _ in a },
                                               dev: false, store: store)
        defer { host.stop() }
        let ann = try await OrgTests.user(host, "ann@example.com")
        _ = try await OrgTests.user(host, "bob@example.com")

        let asked = try await Self.request(host, ann.token, " Ann.New@Example.com ")
        #expect(asked.status == 200 && asked.json["email"].string == "ann.new@example.com" && asked.json["dev_token"] == nil, "\(asked.body)")
        let token = try await Self.link(smtp, "ann.new@example.com")
        #expect(smtp.messages(to: "ann@example.com").isEmpty, "nothing goes to the old address")
        #expect(try await Self.email(host, ann.token) == "ann@example.com", "unchanged until confirmed")

        let wrong = try await Self.confirm(host, String(repeating: "A", count: 43))
        #expect(wrong.status == 401 && wrong.json.errorCode == "INVALID_TOKEN", "\(wrong.body)")
        let done = try await Self.confirm(host, token)
        #expect(done.status == 200 && done.json["email"].string == "ann.new@example.com" && done.json["user_id"].string == ann.id, "\(done.body)")
        #expect(try await Self.email(host, ann.token) == "ann.new@example.com")
        let row = try await host.request("GET", "/api/entities/User/\(ann.id)", token: HostProcess.adminToken)
        #expect(row.json["emailVerified"].string?.contains("T") == true, "the new address is verified: \(row.body)")
        #expect(try await Self.confirm(host, token).json.errorCode == "INVALID_TOKEN", "a link works once")
        #expect(try await PasswordAuthTests.login(host, "ann.new@example.com", OrgTests.password).status == 200)
        #expect(try await PasswordAuthTests.login(host, "ann@example.com", OrgTests.password).status == 401)

        // Taken addresses: refused when asked, and again when confirmed (taken in between).
        let taken = try await Self.request(host, ann.token, "bob@example.com")
        #expect(taken.status == 409 && taken.json.errorCode == "EMAIL_IN_USE", "\(taken.body)")
        #expect(try await Self.request(host, ann.token, "ann.new@example.com").json.errorCode == "SAME_EMAIL")
        _ = try await Self.request(host, ann.token, "cat@example.com")
        let catLink = try await Self.link(smtp, "cat@example.com")
        _ = try await OrgTests.user(host, "cat@example.com")
        let raced = try await Self.confirm(host, catLink)
        #expect(raced.status == 409 && raced.json.errorCode == "EMAIL_IN_USE", "\(raced.body)")
        #expect(try await Self.email(host, ann.token) == "ann.new@example.com")

        // In a browser: the link changes it and goes on to the app.
        _ = try await Self.request(host, ann.token, "ann3@example.com")
        let browserLink = try await Self.link(smtp, "ann3@example.com")
        let port = host.port
        let opened = try await onThread { () throws -> (status: Int, headers: [String: String]) in
            let s = try TestSocket.connect(port: port)
            defer { s.close() }
            try s.send("GET /api/auth/email/change/confirm?token=\(browserLink) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let head = try readHTTPHead(s)
            return (head.status, head.headers)
        }
        #expect(opened.status == 302 && opened.headers["location"] == "/", "\(opened)")
        #expect(try await Self.email(host, ann.token) == "ann3@example.com")

        // Who may ask: a session only.
        #expect(try await host.request("POST", "/api/auth/email/change/request", json: #"{"newEmail":"x@example.com"}"#).status == 401)
        let key = try #require(try await ApiKeyTests.create(host, ann.token).json["key"].string)
        #expect(try await Self.request(host, key, "x@example.com").json.errorCode == "API_KEY_AUTH_FORBIDDEN")
        #expect(try await Self.request(host, ann.token, "not-an-email").status == 400)
        #expect(try await host.request("POST", "/api/auth/email/change/request", json: "{}", token: ann.token).json.errorCode == "MISSING_FIELD")
        #expect(smtp.messages(to: "x@example.com").isEmpty)
    }
}
