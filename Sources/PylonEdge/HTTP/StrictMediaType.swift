/// One media type as RFC 9110 §8.3.1 writes it, read strictly: `type "/" subtype` (tokens),
/// then `*( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )`, printable ASCII, at most
/// `maxBytes`. Anything else is refused, because a browser reads a Content-Type by Fetch's
/// rules (the last of a comma-separated list wins), so `text/plain; charset=utf-8, text/html`
/// looked like plain text here and was rendered as HTML there.
struct StrictMediaType: Equatable {
    /// `type/subtype`, lowercased (both are case-insensitive).
    let essence: String

    /// The longest Content-Type kept for a file.
    static let maxBytes = 255

    /// nil unless `value` (surrounding spaces and tabs aside) is exactly one media type.
    static func parse(_ value: String) -> StrictMediaType? {
        var s = Scanner(Array(value.utf8))
        s.trim()
        guard s.end - s.at <= maxBytes, let type = s.token(), s.take(UInt8(ascii: "/")), let subtype = s.token() else { return nil }
        while true {
            s.skipSpace()
            if s.done { break }
            guard s.take(UInt8(ascii: ";")) else { return nil }
            s.skipSpace()
            // An empty parameter (`text/plain;` or `;;`) is allowed by the grammar.
            if s.done || s.peek == UInt8(ascii: ";") { continue }
            guard s.token() != nil, s.take(UInt8(ascii: "=")) else { return nil }
            guard s.peek == UInt8(ascii: "\"") ? s.quotedString() : s.token() != nil else { return nil }
        }
        return StrictMediaType(essence: (String(decoding: type, as: UTF8.self) + "/" + String(decoding: subtype, as: UTF8.self)).lowercased())
    }

    /// Types a browser shows without running anything: images (not SVG), audio and video,
    /// plain text and PDF — never an XML type (`image/x-foo+xml` is rendered as a document).
    var showsInline: Bool {
        if essence.contains("xml") { return false }
        if essence.hasPrefix("image/") { return !essence.hasPrefix("image/svg") }
        return essence.hasPrefix("audio/") || essence.hasPrefix("video/") || essence == "text/plain" || essence == "application/pdf"
    }

    /// The bytes of a value, read front to back.
    private struct Scanner {
        let bytes: [UInt8]
        var at = 0
        var end: Int

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            end = bytes.count
        }

        var done: Bool { at >= end }
        var peek: UInt8? { done ? nil : bytes[at] }

        static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

        private static let punctuation = Array("!#$%&'*+-.^_`|~".utf8)

        /// RFC 9110 §5.6.2 tchar.
        static func isTokenChar(_ c: UInt8) -> Bool {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): return true
            default: return punctuation.contains(c)
            }
        }

        mutating func trim() {
            while at < end, Self.isSpace(bytes[at]) { at += 1 }
            while end > at, Self.isSpace(bytes[end - 1]) { end -= 1 }
        }

        mutating func skipSpace() {
            while let c = peek, Self.isSpace(c) { at += 1 }
        }

        mutating func take(_ c: UInt8) -> Bool {
            guard peek == c else { return false }
            at += 1
            return true
        }

        /// One or more tchar.
        mutating func token() -> ArraySlice<UInt8>? {
            let start = at
            while let c = peek, Self.isTokenChar(c) { at += 1 }
            return at > start ? bytes[start..<at] : nil
        }

        /// RFC 9110 §5.6.4, without obs-text (bytes past 0x7E are refused everywhere).
        mutating func quotedString() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while let c = peek {
                at += 1
                switch c {
                case UInt8(ascii: "\""): return true
                case UInt8(ascii: "\\"):
                    guard let next = peek, next == 0x09 || (0x20...0x7E).contains(next) else { return false }
                    at += 1
                case 0x09, 0x20...0x7E: continue
                default: return false
                }
            }
            return false
        }
    }
}
