import Foundation

/// Times on the wire: RFC 3339 / ISO 8601 in UTC with milliseconds ("2026-12-05T14:05:06.123Z").
package enum ISOTime {
    package static func now() -> String { string(Date()) }

    /// A time given in milliseconds since 1970.
    package static func string(millis: Int64) -> String { string(Date(timeIntervalSince1970: TimeInterval(millis) / 1000)) }

    package static func string(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}
