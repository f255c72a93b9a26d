import Foundation

/// An email address as every auth path compares it: trimmed and lowercased, so codes, rate
/// limits and the user lookup agree on who is meant (Pylon normalised only some of them).
/// Checked for a plausible shape only — one `@`, a non-empty local part, a dotted domain,
/// no spaces or control characters, at most 254 bytes (RFC 5321's path limit); whether it
/// receives mail is for a code or link to prove.
package struct EmailAddress: Sendable, Hashable, CustomStringConvertible {
    package let value: String

    package init(_ text: String) throws(HostError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard trimmed.utf8.count <= 254, let at = trimmed.firstIndex(of: "@"),
              trimmed.lastIndex(of: "@") == at else {
            throw Self.invalid
        }
        let local = trimmed[..<at], domain = trimmed[trimmed.index(after: at)...]
        guard !local.isEmpty, local.utf8.count <= 64,
              domain.contains("."), !domain.hasPrefix("."), !domain.hasSuffix("."), !domain.contains(".."),
              trimmed.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F && !Self.special.contains($0) }) else {
            throw Self.invalid
        }
        value = trimmed
    }

    package var description: String { value }

    /// Characters RFC 5321 allows only in a quoted local part or an address literal; refused,
    /// so an address can go into a mail header or an SMTP command as it is.
    private static let special = Set("<>()[]\\,;:\"".unicodeScalars)

    private static let invalid = HostError.badRequest("INVALID_EMAIL", "give an email address like name@example.com")
}
