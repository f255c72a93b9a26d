import Foundation
import Testing

/// Account takeover through an address nobody proved (an outside probe, session 21): the
/// user entity's `email` and `emailVerified` are the host's; an account registered with
/// someone else's address is wiped clean when the owner first proves it; a credential
/// change ends pending email-change links; a login form on a foreign site is refused.
/// Black-box, the release host with the SMTP sink (MagicCodeTests' manifest: the user may
/// update their own row).
@Suite("Account claims: identity fields are the host's, unproven accounts are claimed clean, login CSRF refused")
struct AccountClaimTests {
    static func start(_ smtp: MailSink) async throws -> HostProcess {
        try await HostProcess.start(manifest: MagicCodeTests.manifest,
                                    env: MagicCodeTests.env(smtp).merging(ApiKeyTests.pepper) { a, _ in a }, dev: false)
    }

    /// Signs `email` in by a magic code from the sink; the answer.
    static func magicSignIn(_ host: HostProcess, _ smtp: MailSink, _ email: String) async throws -> (status: Int, body: String, json: Any?) {
        let before = smtp.messages(to: email).count
        _ = try await MagicCodeTests.send(host, email)
        var mail: String?
        for _ in 0..<400 where mail == nil {
            let all = smtp.messages(to: email)
            if all.count > before { mail = all.last } else { try await Task.sleep(for: .milliseconds(50)) }
        }
        let code = try #require(mail.flatMap(MailSink.code(in:)), "no code mailed to \(email)")
        return try await MagicCodeTests.verify(host, email, code)
    }

    /// The token of the email-change link mailed to `to`.
    static func changeLink(_ smtp: MailSink, _ to: String) async throws -> String {
        let mail = try await smtp.message(to: to)
        return try #require(MailSink.linkToken(in: mail, path: "/api/auth/email/change/confirm"), "\(mail)")
    }

    @Test("email and emailVerified of the user entity: changes refused to the user (PATCH, push; a stamp on insert too), allowed to the admin; other fields and write-backs pass")
    func identityFieldsAreTheHosts() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await Self.start(smtp)
        defer { host.stop() }
        let reg = try await PasswordAuthTests.register(host, "mallory@example.com", "a long password 1")
        let token = try #require(reg.json["token"].string, "\(reg.body)")
        let me = try #require(reg.json["user_id"].string)
        for patch in [#"{"email":"victim@example.com"}"#, #"{"emailVerified":"2026-01-01T00:00:00Z"}"#,
                      #"{"displayName":"M","email":"victim@example.com"}"#] {
            let r = try await host.request("PATCH", "/api/entities/User/\(me)", json: patch, token: token)
            #expect(r.status == 403 && r.json.errorCode == "IDENTITY_FIELD_READ_ONLY", "\(patch): \(r.body)")
        }
        let stamped = try await host.request("POST", "/api/entities/User", json: #"{"email":"v2@example.com","emailVerified":"2026-01-01T00:00:00Z"}"#, token: token)
        #expect(stamped.status == 403 && stamped.json.errorCode == "IDENTITY_FIELD_READ_ONLY", "a new row never comes verified: \(stamped.body)")
        let pushed = try await host.request("POST", "/api/sync/push", json: #"{"client_id":"c","changes":[{"entity":"User","row_id":"\#(me)","kind":"update","data":{"email":"victim@example.com"},"op_id":"o1"}]}"#, token: token)
        #expect(pushed.body.contains("IDENTITY_FIELD_READ_ONLY"), "\(pushed.status) \(pushed.body)")
        let name = try await host.request("PATCH", "/api/entities/User/\(me)", json: #"{"displayName":"Mal"}"#, token: token)
        #expect(name.status == 200, "\(name.body)")
        let writeBack = try await host.request("PATCH", "/api/entities/User/\(me)", json: #"{"displayName":"Mal","email":"mallory@example.com"}"#, token: token)
        #expect(writeBack.status == 200, "writing back the email the row has changes nothing: \(writeBack.body)")
        let row = try await host.request("GET", "/api/entities/User/\(me)", token: HostProcess.adminToken)
        #expect(row.json["email"].string == "mallory@example.com" && row.json["emailVerified"].isNull, "\(row.body)")
        let login = try await PasswordAuthTests.login(host, "victim@example.com", "a long password 1")
        #expect(login.status == 401, "the victim's address signs nobody in: \(login.body)")
        let admin = try await host.request("PATCH", "/api/entities/User/\(me)", json: #"{"email":"mal2@example.com"}"#, token: HostProcess.adminToken)
        #expect(admin.status == 200, "the admin may: \(admin.body)")
    }

    @Test("An account registered with someone else's address: the owner's first proof (code, reset link) signs them in and ends the stranger's password, sessions, keys and pending email change")
    func unprovenAccountsAreClaimedClean() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await Self.start(smtp)
        defer { host.stop() }
        // Mallory registers the victim's address, keeps a session, mints a key, asks to move
        // the account to an address of hers.
        let reg = try await PasswordAuthTests.register(host, "victim@example.com", "mallory's password 1")
        let malloryToken = try #require(reg.json["token"].string, "\(reg.body)")
        let account = try #require(reg.json["user_id"].string)
        let key = try #require(try await ApiKeyTests.create(host, malloryToken).json["key"].string)
        #expect(try await host.me(key) == account)
        _ = try await EmailChangeTests.request(host, malloryToken, "mallory@example.com")
        let changeLink = try await Self.changeLink(smtp, "mallory@example.com")

        let victim = try await Self.magicSignIn(host, smtp, "victim@example.com")
        #expect(victim.status == 200 && victim.json["user_id"].string == account, "\(victim.body)")
        let victimToken = try #require(victim.json["token"].string)
        #expect(try await host.me(malloryToken) == nil, "the stranger's session ended")
        #expect(try await host.request("GET", "/api/auth/me", token: key).status == 401, "the stranger's API key was revoked")
        #expect(try await PasswordAuthTests.login(host, "victim@example.com", "mallory's password 1").status == 401, "the stranger's password is gone")
        let confirm = try await EmailChangeTests.confirm(host, changeLink)
        #expect(confirm.status == 401 && confirm.json.errorCode == "INVALID_TOKEN", "the pending change is gone: \(confirm.body)")
        #expect(try await EmailChangeTests.email(host, victimToken) == "victim@example.com")

        // Proven now: the next sign-in by code ends nothing.
        let again = try await Self.magicSignIn(host, smtp, "victim@example.com")
        #expect(again.json["user_id"].string == account)
        #expect(try await host.me(victimToken) == account, "a proven account is not wiped again")

        // The same through a password reset link.
        let reg2 = try await PasswordAuthTests.register(host, "second@example.com", "mallory's password 2")
        let token2 = try #require(reg2.json["token"].string, "\(reg2.body)")
        let key2 = try #require(try await ApiKeyTests.create(host, token2).json["key"].string)
        _ = try await host.request("POST", "/api/auth/password/reset/request", json: #"{"email":"second@example.com"}"#)
        let resetToken = try #require(MailSink.resetToken(in: try await smtp.message(to: "second@example.com")))
        let reset = try await host.request("POST", "/api/auth/password/reset/complete",
                                           json: #"{"token":\#(TestJSON.quote(resetToken)),"newPassword":"the owner's password 2"}"#)
        #expect(reset.status == 200, "\(reset.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: key2).status == 401, "a reset that proves the address ends the stranger's key")
        #expect(try await PasswordAuthTests.login(host, "second@example.com", "the owner's password 2").status == 200)

        // Proven, the account is not claimed again, but a reset is still a recovery: a key
        // minted before it (by whoever had the account) ends with it.
        let owner2 = try #require(reset.json["token"].string, "\(reset.body)")
        let key3 = try #require(try await ApiKeyTests.create(host, owner2).json["key"].string)
        let mailed = smtp.messages(to: "second@example.com").count
        _ = try await host.request("POST", "/api/auth/password/reset/request", json: #"{"email":"second@example.com"}"#)
        let mail2 = try await eventually("a second reset mail", timeout: 30) { () -> String? in
            let all = smtp.messages(to: "second@example.com")
            return all.count > mailed ? all.last : nil
        }
        let resetToken2 = try #require(MailSink.resetToken(in: mail2))
        let reset2 = try await host.request("POST", "/api/auth/password/reset/complete",
                                            json: #"{"token":\#(TestJSON.quote(resetToken2)),"newPassword":"the owner's password 3"}"#)
        #expect(reset2.status == 200, "\(reset2.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: key3).status == 401, "a reset of a proven account ends its keys")
    }

    @Test("Email-change links: a new request replaces the last; a password change or sign-out everywhere ends them; guests have none")
    func pendingEmailChangesEnd() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await Self.start(smtp)
        defer { host.stop() }
        let reg = try await PasswordAuthTests.register(host, "ann@example.com", "ann's password 1")
        var token = try #require(reg.json["token"].string, "\(reg.body)")
        _ = try await EmailChangeTests.request(host, token, "first@example.com")
        let first = try await Self.changeLink(smtp, "first@example.com")
        _ = try await EmailChangeTests.request(host, token, "second@example.com")
        let second = try await Self.changeLink(smtp, "second@example.com")
        #expect(try await EmailChangeTests.confirm(host, first).json.errorCode == "INVALID_TOKEN", "replaced by the second request")

        let changed = try await host.request("POST", "/api/auth/password/change",
                                             json: #"{"currentPassword":"ann's password 1","newPassword":"ann's password 2"}"#, token: token)
        #expect(changed.status == 200, "\(changed.body)")
        #expect(try await EmailChangeTests.confirm(host, second).json.errorCode == "INVALID_TOKEN", "a password change ends it")
        token = try #require(changed.json["token"].string)

        _ = try await EmailChangeTests.request(host, token, "third@example.com")
        let third = try await Self.changeLink(smtp, "third@example.com")
        #expect(try await host.request("DELETE", "/api/auth/sessions", token: token).status == 200)
        #expect(try await EmailChangeTests.confirm(host, third).json.errorCode == "INVALID_TOKEN", "signing out everywhere ends it")

        let guest = try await GuestUpgradeTests.guest(host)
        let byGuest = try await EmailChangeTests.request(host, guest, "guest@example.com")
        #expect(byGuest.status == 403 && byGuest.json.errorCode == "GUEST_FORBIDDEN", "a guest has no email to change: \(byGuest.body)")
    }

    /// Mail scanners and link previews fetch links with HEAD before the person does.
    @Test("HEAD on a single-use link (magic link, email change) does nothing; the GET after it still works")
    func headUsesNoLink() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await Self.start(smtp)
        defer { host.stop() }
        _ = try await host.request("POST", "/api/auth/magic-link/send", json: #"{"email":"dan@example.com"}"#)
        let mail = try await smtp.message(to: "dan@example.com")
        let token = try #require(MailSink.linkToken(in: mail, path: "/api/auth/magic-link/verify"), "\(mail)")
        let head = try await host.rawRequest("HEAD", "/api/auth/magic-link/verify?token=\(token)")
        #expect(head.status == 200 && head.headers["set-cookie"] == nil, "\(head.status) \(head.headers)")
        let used = try await host.request("POST", "/api/auth/magic-link/verify", json: #"{"token":\#(TestJSON.quote(token))}"#)
        #expect(used.status == 200 && used.json["token"].string != nil, "the link still works after HEAD: \(used.body)")
        let session = try #require(used.json["token"].string)

        _ = try await EmailChangeTests.request(host, session, "dan2@example.com")
        let change = try await Self.changeLink(smtp, "dan2@example.com")
        #expect(try await host.rawRequest("HEAD", "/api/auth/email/change/confirm?token=\(change)").status == 200)
        #expect(try await EmailChangeTests.email(host, session) == "dan@example.com", "HEAD changed nothing")
        #expect(try await EmailChangeTests.confirm(host, change).status == 200, "the link still works after HEAD")
    }

    @Test("Outside --dev a write from a foreign page without a bearer token is refused (login CSRF); same-origin, no-origin and bearer writes pass")
    func loginCSRF() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await Self.start(smtp)
        defer { host.stop() }
        _ = try await PasswordAuthTests.register(host, "ann@example.com", "ann's password 1")
        let body = #"{"email":"ann@example.com","password":"ann's password 1"}"#
        for headers in [["Origin": "https://evil.example", "Content-Type": "text/plain"], ["Origin": "null"],
                        ["Referer": "https://evil.example/form"]] {
            let r = try await host.rawRequest("POST", "/api/auth/password/login", body: Data(body.utf8), headers: headers)
            #expect(r.status == 403 && r.json.errorCode == "CSRF_REJECTED", "\(headers): \(r.body)")
            #expect(r.headers["set-cookie"] == nil, "\(r.headers)")
        }
        let foreignRegister = try await host.request("POST", "/api/auth/password/register",
                                                     json: #"{"email":"x@example.com","password":"a long password 1"}"#,
                                                     headers: ["Origin": "https://evil.example"])
        #expect(foreignRegister.json.errorCode == "CSRF_REJECTED", "\(foreignRegister.body)")
        #expect(try await host.request("POST", "/api/auth/password/login", json: body, headers: ["Origin": host.baseURL]).status == 200)
        #expect(try await host.request("POST", "/api/auth/password/login", json: body).status == 200, "no Origin: a server, not a page")
        let bearer = try await host.mintSession("someone")
        let withBearer = try await host.request("POST", "/api/auth/password/login", json: body, token: bearer, headers: ["Origin": "https://evil.example"])
        #expect(withBearer.status == 200, "a bearer token is never sent by a browser on its own: \(withBearer.body)")
        let callback = try await host.request("POST", "/api/auth/callback/mock", json: #"{"state":"x","code":"y"}"#, headers: ["Origin": "https://id.provider.example"])
        #expect(callback.json.errorCode != "CSRF_REJECTED", "a provider's form_post comes from its origin: \(callback.body)")
    }
}
