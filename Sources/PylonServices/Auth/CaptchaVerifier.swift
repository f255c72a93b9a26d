import CCurl
import Foundation
import PylonCore
import PylonCurl
import PylonJSON

/// Checks a CAPTCHA token with the provider's siteverify endpoint (Turnstile, hCaptcha and
/// reCAPTCHA share the shape: a form with `secret` and `response`; a JSON answer
/// with `success` and, for reCAPTCHA v3, `score`; the optional `remoteip` is not sent). A missing or refused token is 400
/// `CAPTCHA_FAILED`, as Pylon; a provider that cannot be reached is 503
/// `CAPTCHA_UNAVAILABLE` — the check fails closed, so an outage lets no bot through.
package struct CaptchaVerifier: Sendable {
    let config: CaptchaConfig
    let http = CurlHTTP(timeoutMs: 5000, maxResponseBytes: 64 * 1024)

    package init(_ config: CaptchaConfig) {
        _ = pylon_curl_global_once()
        self.config = config
    }

    package func verify(_ token: String?) async throws(HostError) {
        guard let token, !token.isEmpty, token.utf8.count <= 4096 else {
            throw Self.failed("this host requires a CAPTCHA: send the widget's token as \"captchaToken\"")
        }
        let form = [("secret", config.secret), ("response", token)]
        let reply: CurlHTTP.Reply
        do throws(CurlHTTP.Failure) {
            reply = try await http.send(config.verifyURL, headers: ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json"],
                                        body: Array(CurlHTTP.formEncode(form).utf8))
        } catch {
            throw HostError(status: 503, code: "CAPTCHA_UNAVAILABLE", message: "the CAPTCHA provider could not be reached (\(error.message)); try again shortly")
        }
        guard reply.status == 200, let answer = try? JSONParser.parse(reply.body), let success = answer["success"]?.boolValue else {
            throw HostError(status: 503, code: "CAPTCHA_UNAVAILABLE", message: "the CAPTCHA provider answered HTTP \(reply.status) without a verdict; try again shortly")
        }
        guard success else { throw Self.failed("the CAPTCHA was not solved, or its token was used or expired; solve it again") }
        if let min = config.minScore, let score = answer["score"]?.doubleValue, score < min {
            throw Self.failed("the CAPTCHA's score \(score) is below \(min); try again")
        }
    }

    static func failed(_ message: String) -> HostError {
        HostError.badRequest("CAPTCHA_FAILED", message)
    }
}
