import Crypto
import Foundation
import Testing
import PylonTestPorts

/// The two outside checks of sign-up and sign-in (issue 19), against a stand-in provider on
/// a loopback port (Tests/Fixtures/auth/verifiers.py): the CAPTCHA Pylon asks for before a
/// magic code or link is sent (`PYLON_CAPTCHA_*`), and the breached-password check of new
/// passwords through a k-anonymity range API (`PYLON_PASSWORD_BREACH_CHECK`), off by default.
@Suite("CAPTCHA and breached passwords (black-box, real pylon-host, stand-in provider)")
struct AuthChecksTests {
    static func magicSend(_ host: HostProcess, _ email: String, captcha: String?) async throws -> (status: Int, body: String, json: Any?) {
        let token = captcha.map { #","captchaToken":\#(TestJSON.quote($0))"# } ?? ""
        return try await host.request("POST", "/api/auth/magic/send", json: #"{"email":\#(TestJSON.quote(email))\#(token)}"#)
    }

    @Test("With a CAPTCHA configured, codes and links are sent only for a solved one: missing, wrong or low-score tokens are 400 CAPTCHA_FAILED, a provider that fails is 503 CAPTCHA_UNAVAILABLE; nothing is sent then")
    func captcha() async throws {
        let provider = try await MailSink.launch(fixture: "auth/verifiers.py")
        defer { provider.stop() }
        let base = "http://127.0.0.1:\(provider.port)"
        let host = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: [
            "PYLON_CAPTCHA_PROVIDER": "recaptcha", "PYLON_CAPTCHA_SECRET": "s3cret", "PYLON_CAPTCHA_MIN_SCORE": "0.5",
            "PYLON_CAPTCHA_VERIFY_URL": base + "/siteverify",
        ], dev: true)
        defer { host.stop() }
        let ok = try await Self.magicSend(host, "ada@example.com", captcha: "solved")
        #expect(ok.status == 200 && ok.json["dev_code"].string != nil, "\(ok.body)")
        let posted = try await provider.posts(count: 1)
        #expect(posted[0]["body"].string == "secret=s3cret&response=solved", "the form Pylon's providers take: \(posted)")

        for (token, what) in [(nil, "no token"), ("", "an empty token"), ("forged", "a refused token"), ("bot-ish", "a score of 0.1")] as [(String?, String)] {
            let r = try await Self.magicSend(host, "bob@example.com", captcha: token)
            #expect(r.status == 400 && r.json.errorCode == "CAPTCHA_FAILED" && r.json["dev_code"] == nil, "\(what): \(r.body)")
        }
        let link = try await host.request("POST", "/api/auth/magic-link/send", json: #"{"email":"bob@example.com"}"#)
        #expect(link.status == 400 && link.json.errorCode == "CAPTCHA_FAILED", "magic links too: \(link.body)")
        let linked = try await host.request("POST", "/api/auth/magic-link/send", json: #"{"email":"bob@example.com","captchaToken":"solved"}"#)
        #expect(linked.status == 200 && linked.json["dev_token"].string != nil, "\(linked.body)")
        let codes = try await host.request("GET", "/api/admin/auth/magic_codes", token: HostProcess.adminToken).json.items
        #expect(codes.filter { $0["email"].string == "bob@example.com" }.count == 1, "only the solved request left a secret: \(codes)")

        // The provider answering an error, or not at all: closed, not open.
        let broken = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: [
            "PYLON_CAPTCHA_PROVIDER": "turnstile", "PYLON_CAPTCHA_SECRET": "s3cret", "PYLON_CAPTCHA_VERIFY_URL": base + "/broken",
        ], dev: true)
        defer { broken.stop() }
        let failing = try await Self.magicSend(broken, "ada@example.com", captcha: "solved")
        #expect(failing.status == 503 && failing.json.errorCode == "CAPTCHA_UNAVAILABLE", "\(failing.body)")
        let closedPort = try freeLoopbackPort()
        let gone = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: [
            "PYLON_CAPTCHA_PROVIDER": "hcaptcha", "PYLON_CAPTCHA_SECRET": "s3cret",
            "PYLON_CAPTCHA_VERIFY_URL": "http://127.0.0.1:\(closedPort)/siteverify",
        ], dev: true)
        defer { gone.stop() }
        let unreachable = try await Self.magicSend(gone, "ada@example.com", captcha: "solved")
        #expect(unreachable.status == 503 && unreachable.json.errorCode == "CAPTCHA_UNAVAILABLE", "\(unreachable.body)")
        #expect(!unreachable.body.contains("s3cret"))
    }

    @Test("A misconfigured CAPTCHA stops the start with a message naming the variable")
    func captchaConfig() async throws {
        for (env, needle) in [(["PYLON_CAPTCHA_PROVIDER": "recaptcha"], "PYLON_CAPTCHA_SECRET"),
                              (["PYLON_CAPTCHA_PROVIDER": "nocaptcha", "PYLON_CAPTCHA_SECRET": "x"], "PYLON_CAPTCHA_PROVIDER"),
                              (["PYLON_CAPTCHA_PROVIDER": "turnstile", "PYLON_CAPTCHA_SECRET": "x", "PYLON_CAPTCHA_MIN_SCORE": "2"], "PYLON_CAPTCHA_MIN_SCORE"),
                              (["PYLON_PASSWORD_BREACH_CHECK": "maybe"], "PYLON_PASSWORD_BREACH_CHECK")] {
            do {
                let host = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: env, dev: true)
                host.stop()
                Issue.record("\(env) started")
            } catch {
                #expect("\(error)".contains(needle), "\(env): \(error)")
            }
        }
    }

    @Test("With the breach check on, a breached password is refused at register, change and reset (400 PASSWORD_BREACHED) and only 5 hex digits of its SHA-1 leave the host; the service down lets passwords through")
    func breachedPasswords() async throws {
        let service = try await MailSink.launch(fixture: "auth/verifiers.py")
        defer { service.stop() }
        let host = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: [
            "PYLON_PASSWORD_BREACH_CHECK": "http://127.0.0.1:\(service.port)/range",
        ], dev: true)
        defer { host.stop() }
        let breached = try await PasswordAuthTests.register(host, "ada@example.com", "correct horse battery")
        #expect(breached.status == 400 && breached.json.errorCode == "PASSWORD_BREACHED", "\(breached.body)")
        let asked = try await service.posts(count: 1)
        #expect(asked[0]["path"].string == "/range/" + String(Self.sha1Hex("correct horse battery").prefix(5)), "\(asked)")
        #expect(!String(describing: asked).contains(String(Self.sha1Hex("correct horse battery").dropFirst(5))), "the suffix never leaves the host")

        let fine = try await PasswordAuthTests.register(host, "ada@example.com", "a long unbreached one")
        #expect(fine.status == 200, "\(fine.body)")
        let token = try #require(fine.json["token"].string)
        let change = try await host.request("POST", "/api/auth/password/change",
                                            json: #"{"currentPassword":"a long unbreached one","newPassword":"correct horse battery"}"#, token: token)
        #expect(change.status == 400 && change.json.errorCode == "PASSWORD_BREACHED", "\(change.body)")
        let reset = try await host.request("POST", "/api/auth/password/reset/request", json: #"{"email":"ada@example.com"}"#)
        let link = try #require(reset.json["dev_token"].string)
        let completed = try await host.request("POST", "/api/auth/password/reset/complete",
                                               json: #"{"token":\#(TestJSON.quote(link)),"newPassword":"correct horse battery"}"#)
        #expect(completed.status == 400 && completed.json.errorCode == "PASSWORD_BREACHED", "\(completed.body)")
        let again = try await host.request("POST", "/api/auth/password/reset/complete",
                                           json: #"{"token":\#(TestJSON.quote(link)),"newPassword":"another long one"}"#)
        #expect(again.status == 200, "the refused password did not use the link up: \(again.body)")

        // The service unreachable: the check is skipped (and logged), sign-up works.
        let down = try await HostProcess.start(manifest: MagicCodeTests.manifest, env: [
            "PYLON_PASSWORD_BREACH_CHECK": "http://127.0.0.1:\(service.port)/down",
        ], dev: true)
        defer { down.stop() }
        #expect(try await PasswordAuthTests.register(down, "bob@example.com", "correct horse battery").status == 200)
        #expect(down.log.contains("breached-password check skipped"))
    }

    static func sha1Hex(_ s: String) -> String {
        Insecure.SHA1.hash(data: Array(s.utf8)).map { String(format: "%02X", $0) }.joined()
    }
}
