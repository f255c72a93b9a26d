#if canImport(Glibc)
import Glibc

#elseif canImport(Darwin)
import Darwin
#endif

/// Why a document is not JSON. `offset` is the byte offset where parsing stopped.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

/// A strict RFC 8259 parser over UTF-8 bytes. Nesting is limited (`maxDepth`) so a hostile
/// body of 100,000 `[` cannot exhaust the stack; duplicate keys keep the last value.
public struct JSONParser {
    public static let maxDepth = 256

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buf throws(JSONParseError) in
            var p = JSONParser(buf: buf)
            p.skipWS()
            let v = try p.value(depth: 0)
            p.skipWS()
            if p.i != buf.count { throw p.fail("unexpected trailing characters") }
            return v
        }
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Checks that `bytes` is one JSON document, by the same rules and with the same errors
    /// as `parse`, building nothing: for JSON that is only passed on (a function's
    /// arguments and return value).
    public static func validate(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) {
        var p = JSONParser(buf: bytes)
        p.skipWS()
        try p.skipValue(depth: 0)
        p.skipWS()
        if p.i != bytes.count { throw p.fail("unexpected trailing characters") }
    }

    public static func validate(_ bytes: [UInt8]) throws(JSONParseError) {
        try bytes.withUnsafeBufferPointer { b throws(JSONParseError) in try validate(b) }
    }

    /// The members of the object that is the whole of `bytes`, located in one pass and
    /// built into nothing: for a reader that wants a few members of a document, some only to
    /// hand their raw bytes on (`JSONMembers`). The grammar, the depth limit and the errors
    /// are `parse`'s, and keys are checked as `parse` checks them; the contents of strings
    /// inside values (their escapes and UTF-8) are checked when a value is read
    /// (`string(_:at:)`, `parse`) — or by whoever receives it — so a value that `parse`
    /// would refuse still leaves the rest of the document readable.
    public static func members(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> [JSONMember] {
        var p = JSONParser(buf: bytes, checksStrings: false)
        p.skipWS()
        guard p.i < bytes.count, bytes[p.i] == UInt8(ascii: "{") else { throw p.fail("expected an object") }
        p.i += 1
        var out: [JSONMember] = []
        p.skipWS()
        if p.i < bytes.count, bytes[p.i] == UInt8(ascii: "}") {
            p.i += 1
        } else {
            while true {
                p.skipWS()
                guard p.i < bytes.count, bytes[p.i] == UInt8(ascii: "\"") else { throw p.fail("expected a string key") }
                let keyStart = p.i + 1
                let escaped = try p.skipString(checked: true)
                let key = keyStart..<(p.i - 1)
                p.skipWS()
                guard p.i < bytes.count, bytes[p.i] == UInt8(ascii: ":") else { throw p.fail("expected ':'") }
                p.i += 1
                p.skipWS()
                let start = p.i
                try p.skipValue(depth: 1)
                out.append(JSONMember(key: key, value: start..<p.i, keyHasEscapes: escaped))
                p.skipWS()
                guard p.i < bytes.count else { throw p.fail("unexpected end of input in object") }
                if bytes[p.i] == UInt8(ascii: ",") { p.i += 1; continue }
                if bytes[p.i] == UInt8(ascii: "}") { p.i += 1; break }
                throw p.fail("expected ',' or '}'")
            }
        }
        p.skipWS()
        if p.i != bytes.count { throw p.fail("unexpected trailing characters") }
        return out
    }

    /// The string at `range` of `bytes` (its quotes included), decoded and checked as `parse`
    /// does; offsets in errors are offsets in `bytes`.
    public static func string(_ bytes: UnsafeBufferPointer<UInt8>, at range: Range<Int>) throws(JSONParseError) -> String {
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "range outside the document")
        var p = JSONParser(buf: UnsafeBufferPointer(rebasing: bytes[..<range.upperBound]))
        p.i = range.lowerBound
        guard p.i < range.upperBound, bytes[p.i] == UInt8(ascii: "\"") else { throw p.fail("expected a string") }
        let s = try p.string()
        if p.i != range.upperBound { throw p.fail("unexpected characters after the string") }
        return s
    }

    private let buf: UnsafeBufferPointer<UInt8>
    private var i = 0
    /// Whether strings skipped inside values are checked (escapes, UTF-8) or only delimited
    /// (`members`).
    private let checksStrings: Bool

    private init(buf: UnsafeBufferPointer<UInt8>, checksStrings: Bool = true) {
        self.buf = buf
        self.checksStrings = checksStrings
    }

    private func fail(_ m: String) -> JSONParseError { JSONParseError(message: m, offset: i) }

    private mutating func skipWS() {
        while i < buf.count {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard i < buf.count else { throw fail("unexpected end of input") }
        switch buf[i] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(buf[i])))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= buf.count else { throw fail("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where buf[i + k] != w[k] { throw fail("invalid literal") }
        i += n
    }

    private mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > JSONParser.maxDepth { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        i += 1
        var pairs: [(String, JSONValue)] = []
        // Where each key is, once the object has more than a few: with a scan per key, a
        // body of 100,000 distinct keys took minutes of CPU (quadratic); now it is linear.
        // Keyed by the key's bytes: keys compare by code points (`JSONValue.sameKey`).
        var slots: [[UInt8]: Int] = [:]
        skipWS()
        if i < buf.count, buf[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
        while true {
            skipWS()
            guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipWS()
            guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipWS()
            let v = try value(depth: depth)
            if pairs.count >= 16 && slots.isEmpty {
                for (n, pair) in pairs.enumerated() { slots[Array(pair.0.utf8)] = n }
            }
            let slot = slots.isEmpty ? nil : Array(key.utf8)
            let existing = if let slot { slots[slot] } else { pairs.firstIndex(where: { JSONValue.sameKey($0.0, key) }) }
            if let existing {
                pairs[existing].1 = v
            } else {
                if let slot { slots[slot] = pairs.count }
                pairs.append((key, v))
            }
            skipWS()
            guard i < buf.count else { throw fail("unexpected end of input in object") }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > JSONParser.maxDepth { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        i += 1
        var items: [JSONValue] = []
        skipWS()
        if i < buf.count, buf[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWS()
            items.append(try value(depth: depth))
            skipWS()
            guard i < buf.count else { throw fail("unexpected end of input in array") }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func string() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes. An ASCII string (no byte ≥ 0x80 seen) is valid UTF-8 as it
        // is; any other is decoded and checked in one pass.
        var high: UInt8 = 0
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let bytes = UnsafeBufferPointer(rebasing: buf[start..<i])
                i += 1
                if high < 0x80 { return String(decoding: bytes, as: UTF8.self) }
                guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            high |= c
            i += 1
        }
        var out = Array(buf[start..<i])
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard Self.isValidUTF8(out) else { throw fail("invalid UTF-8 in string") }
                return String(decoding: out, as: UTF8.self)
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < buf.count else { break }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let scalar = try unicodeEscape()
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    /// After `\u`: the code point, a surrogate pair joined; a lone surrogate is an error.
    private mutating func unicodeEscape() throws(JSONParseError) -> UInt32 {
        let scalar = try hex4()
        if (0xD800...0xDBFF).contains(scalar) {
            guard i + 1 < buf.count, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u")
            else { throw fail("unpaired surrogate") }
            i += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
            return 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        if (0xDC00...0xDFFF).contains(scalar) { throw fail("unpaired surrogate") }
        return scalar
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= buf.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            v <<= 4
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v |= UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v |= UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v |= UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit")
            }
            i += 1
        }
        return v
    }

    /// `value` without building it.
    private mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard i < buf.count else { throw fail("unexpected end of input") }
        switch buf[i] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = buf[i] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            if depth + 1 > JSONParser.maxDepth { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
            i += 1
            skipWS()
            if i < buf.count, buf[i] == close { i += 1; return }
            while true {
                skipWS()
                if close == UInt8(ascii: "}") {
                    guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    try skipString(checked: checksStrings)
                    skipWS()
                    guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skipWS()
                }
                try skipValue(depth: depth + 1)
                skipWS()
                guard i < buf.count else { throw fail("unexpected end of input in \(close == UInt8(ascii: "}") ? "object" : "array")") }
                if buf[i] == UInt8(ascii: ",") { i += 1; continue }
                if buf[i] == close { i += 1; return }
                throw fail(close == UInt8(ascii: "}") ? "expected ',' or '}'" : "expected ',' or ']'")
            }
        case UInt8(ascii: "\""): try skipString(checked: checksStrings)
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(buf[i])))'")
        }
    }

    /// `string` without building it: with `checked`, escapes, surrogate pairs and UTF-8 are
    /// checked the same way; without, the string is only delimited (its end found, no
    /// control characters). Whether it has an escape.
    @discardableResult
    private mutating func skipString(checked: Bool) throws(JSONParseError) -> Bool {
        i += 1  // opening quote
        let start = i
        var escaped = false
        // Any byte ≥ 0x80 seen: only then is there UTF-8 to check.
        var high: UInt8 = 0
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                if checked, high >= 0x80, !Self.isValidUTF8(UnsafeBufferPointer(rebasing: buf[start..<(i - 1)])) {
                    throw fail("invalid UTF-8 in string")
                }
                return escaped
            }
            if c < 0x20 { throw fail("control character in string") }
            high |= c
            if c != UInt8(ascii: "\\") { i += 1; continue }
            escaped = true
            i += 1
            if !checked { i = min(i + 1, buf.count); continue }
            guard i < buf.count else { break }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                continue
            case UInt8(ascii: "u"):
                _ = try unicodeEscape()
            default: throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let (start, isInt) = try scanNumber()
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        if isInt, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw fail("invalid number") }
        return .double(d)
    }

    /// Moves past a number; where it began and whether it is an integer.
    private mutating func scanNumber() throws(JSONParseError) -> (start: Int, isInt: Bool) {
        let start = i
        var isInt = true
        if buf[i] == UInt8(ascii: "-") { i += 1 }
        guard i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) else {
            throw fail("invalid number")
        }
        if buf[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) { i += 1 }
        }
        if i < buf.count, buf[i] == UInt8(ascii: ".") {
            isInt = false
            i += 1
            guard i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) else {
                throw fail("invalid number")
            }
            while i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) { i += 1 }
        }
        if i < buf.count, buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E") {
            isInt = false
            i += 1
            if i < buf.count, buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-") { i += 1 }
            guard i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) else {
                throw fail("invalid number")
            }
            while i < buf.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(buf[i]) { i += 1 }
            try checkRange(from: start)
        } else if i - start > 300 {
            try checkRange(from: start)
        }
        return (start, isInt)
    }

    /// Refuses a number no Double can hold (`1e400`, 400 digits) instead of reading it as
    /// infinity: JSON cannot write infinity back, so the value would silently become `null`.
    /// Only a number with an exponent or over 300 characters long can be out of range.
    private func checkRange(from start: Int) throws(JSONParseError) {
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else {
            throw JSONParseError(message: "number out of range (beyond a 64-bit float)", offset: start)
        }
    }

    static func isValidUTF8<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
