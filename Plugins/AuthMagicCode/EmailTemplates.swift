import Foundation
import PylonJSON

/// Pylon's email templates (`email_templates.rs`): plain text, `{{name}}` variables, each
/// overridable by `PYLON_EMAIL_TEMPLATE_<KIND>_SUBJECT` / `_BODY` (config keys
/// `template_<kind>_subject` / `_body`).
enum EmailTemplates {
    static let kinds = ["MAGIC_CODE", "MAGIC_LINK", "PASSWORD_RESET", "EMAIL_CHANGE", "ORG_INVITE"]

    static let defaults: [String: (subject: String, body: String)] = [
        "MAGIC_CODE": ("Your {{app_name}} sign-in code: {{code}}",
                       "Your {{app_name}} code is {{code}}.\n\nIt expires in 10 minutes. If you did not ask for it, you can ignore this email."),
        "MAGIC_LINK": ("Sign in to {{app_name}}",
                       "Open this link to sign in to {{app_name}}:\n\n{{url}}\n\nIt works once and expires in 15 minutes. If you did not ask for it, you can ignore this email."),
        "PASSWORD_RESET": ("Reset your {{app_name}} password",
                           "Open this link to choose a new password for {{app_name}}:\n\n{{url}}\n\nIt works once and expires in 30 minutes. If you did not ask for it, you can ignore this email; your password stays as it is."),
        "EMAIL_CHANGE": ("Confirm your new email for {{app_name}}",
                         "Open this link to confirm this address for {{app_name}}:\n\n{{url}}\n\nIf you did not ask for it, you can ignore this email."),
        "ORG_INVITE": ("You are invited to {{org_name}} on {{app_name}}",
                       "You have been invited to join {{org_name}} on {{app_name}}. Open this link to accept:\n\n{{url}}"),
    ]

    /// Subject and body of `kind` with `vars` filled in (a variable not given is left
    /// empty); nil for a kind that does not exist.
    static func render(_ kind: String, vars: JSONValue, config: CodeConfig) -> (subject: String, body: String)? {
        guard let base = defaults[kind] else { return nil }
        let override = config.templates[kind]
        var values: [String: String] = ["app_name": config.appName]
        for (k, v) in vars.objectValue ?? [] { if let s = v.stringValue { values[k] = s } }
        let subject = fill(override?.subject ?? base.subject, values)
        return (EmailText.headerSafe(subject), fill(override?.body ?? base.body, values))
    }

    /// Replaces each `{{name}}` (spaces inside allowed) by its value.
    static func fill(_ template: String, _ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                out += rest[open.lowerBound...]
                return out
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            out += values[name] ?? ""
            rest = rest[close.upperBound...]
        }
        return out + rest
    }
}

/// Addresses and the RFC 5322 message SMTP carries.
enum EmailText {
    /// `name@domain` with nothing a header or an SMTP command could be bent with.
    static func isPlainAddress(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && s.utf8.count <= 254
            && s.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !"<>(),;:\"[]\\".unicodeScalars.contains($0) }
    }

    /// The address inside `Name <address>`, when `s` has that form.
    static func displayAddress(_ s: String) -> String? {
        guard s.hasSuffix(">"), let open = s.lastIndex(of: "<"), !s.contains("\r"), !s.contains("\n") else { return nil }
        let address = String(s[s.index(after: open)..<s.index(before: s.endIndex)])
        return isPlainAddress(address) ? address : nil
    }

    /// The bare address of a `from` setting (for MAIL FROM and the JSON APIs).
    static func bareAddress(_ s: String) -> String { displayAddress(s) ?? s }

    /// One header line's value: no CR or LF (no header injection), at most 998 bytes.
    static func headerSafe(_ s: String) -> String {
        String(s.map { $0 == "\r" || $0 == "\n" ? " " : $0 }.prefix(900))
    }

    /// A header value in RFC 2047 base64 when it is not plain ASCII.
    static func encodedWord(_ s: String) -> String {
        if s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) { return s }
        return "=?UTF-8?B?\(Data(s.utf8).base64EncodedString())?="
    }

    /// The whole message: headers, a blank line, the body with CRLF line ends.
    static func message(from: String, to: String, subject: String, body: String, now: Date = Date()) -> String {
        let domain = bareAddress(from).split(separator: "@").last.map(String.init) ?? "localhost"
        let id = Secrets.hex(Secrets.randomBytes(12))
        let date = DateFormatter()
        date.locale = Locale(identifier: "en_US_POSIX")
        date.timeZone = TimeZone(identifier: "UTC")
        date.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        let lines = body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
        return ["From: \(headerSafe(from))", "To: \(to)", "Subject: \(encodedWord(headerSafe(subject)))",
                "Date: \(date.string(from: now))", "Message-ID: <\(id)@\(domain)>", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", ""]
            .joined(separator: "\r\n") + "\r\n" + lines.joined(separator: "\r\n") + "\r\n"
    }
}
