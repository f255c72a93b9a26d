import Foundation
import PylonJSON
import PylonPluginKit

/// The plugin's settings: the manifest's `plugins."auth.code"` object, with the host's
/// `PYLON_EMAIL_*` / `PYLON_SMTP_URL` settings merged over it (README, "Email").
struct CodeConfig {
    /// How mail leaves: the log (development), SMTP, or one of Pylon's HTTP email APIs.
    enum Transport {
        case console
        case smtp(url: String, useSSL: Int, host: String)
        /// `provider` is Pylon's name (sendgrid, resend, stack0, webhook).
        case http(provider: String, endpoint: String, apiKey: String?)
    }

    var transport: Transport = .console
    var providerName = "console"
    var from = "noreply@pylonsync.com"
    var appName = "Pylon"
    var dev = false
    /// Lifetimes (seconds) by kind and purpose, Pylon's: codes 10 min, links 15 min,
    /// password reset links 30 min, email change links 24 h.
    var codeTTL: Int64 = 600
    var linkTTL: Int64 = 900
    var resetTTL: Int64 = 1800
    var emailChangeTTL: Int64 = 86_400
    /// Wrong codes before a code is dead (Pylon: 5), and the resend cooldown (60 s).
    var maxAttempts: Int64 = 5
    var cooldown: Int64 = 60
    var codeDigits = 6
    /// Per message: the whole transfer's and the connection's limits (Pylon: 10 s).
    var timeoutMs = 10_000
    var connectTimeoutMs = 5_000
    /// Threads that deliver mail, and messages that may wait for one.
    var sendThreads = 2
    var queueLimit = 256
    /// A PEM bundle to trust for smtps/STARTTLS/HTTPS instead of the system's.
    var caFile: String?
    /// Template overrides by kind ("MAGIC_CODE"...): subject and body.
    var templates: [String: (subject: String?, body: String?)] = [:]

    static let httpEndpoints = [
        "sendgrid": "https://api.sendgrid.com/v3/mail/send",
        "resend": "https://api.resend.com/emails",
        "stack0": "https://api.stack0.dev/mail/send",
    ]

    /// Reads the config object; the message of a failure names the key and what to give.
    static func parse(_ bytes: [UInt8]) -> Result<CodeConfig, ConfigProblem> {
        guard let object = configObject(bytes) else { return .failure(ConfigProblem("the config is not a JSON object")) }
        var c = CodeConfig()
        func string(_ key: String) -> String? {
            guard let s = object[key]?.stringValue?.trimmingCharacters(in: .whitespaces), !s.isEmpty else { return nil }
            return s
        }
        func int(_ key: String, _ range: ClosedRange<Int64>) throws(ConfigProblem) -> Int64? {
            guard let v = object[key], !v.isNull else { return nil }
            guard let n = v.intValue ?? v.stringValue.flatMap({ Int64($0) }), range.contains(n) else {
                throw ConfigProblem("\(key) must be a whole number in \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        do throws(ConfigProblem) {
            c.dev = object["dev"]?.boolValue ?? false
            if let n = string("app_name") { c.appName = n }
            if let f = string("from") {
                guard EmailText.isPlainAddress(f) || EmailText.displayAddress(f) != nil else {
                    throw ConfigProblem("from (PYLON_EMAIL_FROM) must be an address like noreply@example.com or \"App <noreply@example.com>\"")
                }
                c.from = f
            }
            if let n = try int("code_ttl_secs", 1...86_400) { c.codeTTL = n }
            if let n = try int("link_ttl_secs", 1...604_800) { c.linkTTL = n }
            if let n = try int("reset_ttl_secs", 1...604_800) { c.resetTTL = n }
            if let n = try int("email_change_ttl_secs", 1...604_800) { c.emailChangeTTL = n }
            if let n = try int("max_attempts", 1...100) { c.maxAttempts = n }
            if let n = try int("cooldown_secs", 0...3600) { c.cooldown = n }
            if let n = try int("code_digits", 6...10) { c.codeDigits = Int(n) }
            if let n = try int("send_timeout_secs", 1...300) { c.timeoutMs = Int(n) * 1000 }
            if let n = try int("send_threads", 1...32) { c.sendThreads = Int(n) }
            if let n = try int("queue_limit", 1...100_000) { c.queueLimit = Int(n) }
            c.caFile = string("ca_file")
            for kind in EmailTemplates.kinds {
                let base = "template_\(kind.lowercased())_"
                let subject = string(base + "subject"), body = object[base + "body"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                if subject != nil || body != nil { c.templates[kind] = (subject, body) }
            }
            let provider = (string("provider") ?? "console").lowercased()
            c.providerName = provider
            c.transport = try transport(provider, smtpURL: string("smtp_url"), endpoint: string("endpoint"), apiKey: string("api_key"))
        } catch {
            return .failure(error)
        }
        return .success(c)
    }

    private static func transport(_ provider: String, smtpURL: String?, endpoint: String?, apiKey: String?) throws(ConfigProblem) -> Transport {
        switch provider {
        case "console", "":
            return .console
        case "smtp":
            guard let smtpURL else {
                throw ConfigProblem("provider smtp needs smtp_url (PYLON_SMTP_URL=smtp://[user:pass@]host:port or smtps://...)")
            }
            let (host, tls) = try smtpTarget(smtpURL)
            // smtps:// is TLS from the first byte; smtp:// must upgrade with STARTTLS unless
            // the server is on this machine (nothing crosses a network).
            let level = tls ? 0 : (isLoopback(host) ? 1 : 3)  // CURLUSESSL_NONE / TRY / ALL
            return .smtp(url: smtpURL, useSSL: level, host: host)
        case "sendgrid", "resend", "stack0", "webhook":
            let url = endpoint ?? httpEndpoints[provider]
            guard let url else {
                throw ConfigProblem("provider webhook needs endpoint (PYLON_EMAIL_ENDPOINT), the URL the message is POSTed to")
            }
            guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                throw ConfigProblem("endpoint (PYLON_EMAIL_ENDPOINT) must be an http:// or https:// URL")
            }
            if provider != "webhook" && apiKey == nil {
                throw ConfigProblem("provider \(provider) needs api_key (PYLON_EMAIL_API_KEY)")
            }
            return .http(provider: provider, endpoint: url, apiKey: apiKey)
        default:
            throw ConfigProblem("provider (PYLON_EMAIL_PROVIDER) is \"\(provider)\"; use console, smtp, sendgrid, resend, stack0 or webhook")
        }
    }

    /// The host of an smtp:// or smtps:// URL, and whether it is smtps.
    private static func smtpTarget(_ url: String) throws(ConfigProblem) -> (host: String, tls: Bool) {
        let lower = url.lowercased()
        let tls: Bool
        if lower.hasPrefix("smtps://") { tls = true } else if lower.hasPrefix("smtp://") { tls = false } else {
            throw ConfigProblem("smtp_url (PYLON_SMTP_URL) must start with smtp:// or smtps://")
        }
        guard let parts = URLComponents(string: url), let host = parts.host, !host.isEmpty else {
            throw ConfigProblem("smtp_url (PYLON_SMTP_URL) has no host; give smtp://[user:pass@]host:port")
        }
        return (host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), tls)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Where mail goes, for the startup log: never a password or an API key.
    var describe: String {
        switch transport {
        case .console: return "console (mail is written to the host's log)"
        case let .smtp(_, level, host): return "smtp to \(host)\(level == 3 ? " (STARTTLS required)" : level == 0 ? " (TLS)" : "")"
        case let .http(provider, endpoint, _): return "\(provider) via \(endpoint)"
        }
    }
}

/// Why a config was refused.
struct ConfigProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
