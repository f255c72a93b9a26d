/// A CAPTCHA required before magic codes and links are sent (Pylon's
/// `PYLON_CAPTCHA_PROVIDER`, `_SECRET`, `_MIN_SCORE`; `_VERIFY_URL` is ours, for a
/// self-hosted or test verifier). The client sends the widget's token as `captchaToken`.
public struct CaptchaConfig: Sendable, Equatable {
    public var provider: String
    public var secret: String
    /// reCAPTCHA v3 answers a score; below this the check fails.
    public var minScore: Double?
    /// The provider's siteverify endpoint.
    public var verifyURL: String

    /// Each provider's siteverify endpoint (all take `secret`, `response`, `remoteip` as a form).
    public static let endpoints = [
        "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "hcaptcha": "https://api.hcaptcha.com/siteverify",
        "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
    ]

    public init(provider: String, secret: String, minScore: String?, verifyURL: String?) throws(HostError) {
        let name = provider.lowercased()
        guard let url = verifyURL ?? Self.endpoints[name] else {
            throw HostError(status: 500, code: "CONFIG_INVALID",
                            message: "PYLON_CAPTCHA_PROVIDER=\(provider) is not one of \(Self.endpoints.keys.sorted().joined(separator: ", ")) (or set PYLON_CAPTCHA_VERIFY_URL)")
        }
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_CAPTCHA_VERIFY_URL=\(url) is not an http(s) URL")
        }
        var score: Double?
        if let minScore, !minScore.isEmpty {
            guard let s = Double(minScore), s >= 0, s <= 1 else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_CAPTCHA_MIN_SCORE=\(minScore) is not a number from 0 to 1")
            }
            score = s
        }
        self.provider = name
        self.secret = secret
        self.minScore = score
        self.verifyURL = url
    }
}
