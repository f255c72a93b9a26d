/// Minimal JSON handling for NDJSON frames: the plugin only needs a frame's top-level keys
/// and the raw bytes of their values (payloads are forwarded to the host untouched), so
/// it scans instead of building a document. Malformed input yields nil, never a crash.
struct JSONScan {
    let b: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { b = bytes }

    /// Top-level members of an object: key → byte range of the raw value.
    static func object(_ bytes: [UInt8]) -> [String: Range<Int>]? {
        var s = JSONScan(bytes)
        return s.members()
    }

    /// Byte ranges of the elements of a top-level array.
    static func array(_ bytes: [UInt8]) -> [Range<Int>]? {
        var s = JSONScan(bytes)
        s.ws()
        guard s.i < s.b.count, s.b[s.i] == UInt8(ascii: "[") else { return nil }
        s.i += 1
        var out: [Range<Int>] = []
        s.ws()
        if s.i < s.b.count, s.b[s.i] == UInt8(ascii: "]") { return out }
        while true {
            s.ws()
            let start = s.i
            guard s.skipValue() else { return nil }
            out.append(start..<s.i)
            s.ws()
            guard s.i < s.b.count else { return nil }
            if s.b[s.i] == UInt8(ascii: ",") { s.i += 1; continue }
            if s.b[s.i] == UInt8(ascii: "]") { return out }
            return nil
        }
    }

    /// Decodes a JSON string value (with its quotes) to a Swift string.
    static func string(_ raw: ArraySlice<UInt8>) -> String? {
        var s = JSONScan(Array(raw))
        s.ws()
        return s.readString()
    }

    /// The same for the value at `range` of `bytes`, without copying it out first.
    static func string(in bytes: [UInt8], _ range: Range<Int>) -> String? {
        var s = JSONScan(bytes)
        s.i = range.lowerBound
        s.ws()
        guard let v = s.readString(), s.i <= range.upperBound else { return nil }
        return v
    }

    mutating func members() -> [String: Range<Int>]? {
        guard let ranges = memberRanges() else { return nil }
        var out: [String: Range<Int>] = [:]
        for (key, value) in ranges {
            guard let name = JSONScan.string(b[(key.lowerBound - 1)...key.upperBound]) else { return nil }
            out[name] = value
        }
        return out
    }

    /// Top-level members of an object in order: the key's bytes inside its quotes (escapes
    /// left as written) and the raw value. Builds no strings.
    mutating func memberRanges() -> [(key: Range<Int>, value: Range<Int>)]? {
        ws()
        guard i < b.count, b[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var out: [(key: Range<Int>, value: Range<Int>)] = []
        ws()
        if i < b.count, b[i] == UInt8(ascii: "}") { return out }
        while true {
            ws()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            let keyStart = i + 1
            guard skipStringFast() else { return nil }
            let key = keyStart..<(i - 1)
            ws()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            ws()
            let start = i
            guard skipValue() else { return nil }
            out.append((key, start..<i))
            ws()
            guard i < b.count else { return nil }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { return out }
            return nil
        }
    }

    mutating func ws() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    mutating func skipValue() -> Bool {
        guard i < b.count else { return false }
        switch b[i] {
        case UInt8(ascii: "\""): return readString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            // Depth-count brackets, skipping strings.
            var depth = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    guard skipStringFast() else { return false }
                    continue
                }
                if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { i += 1; return true }
                }
                i += 1
            }
            return false
        default:
            let start = i
            while i < b.count, !(b[i] == UInt8(ascii: ",") || b[i] == UInt8(ascii: "}") || b[i] == UInt8(ascii: "]")
                                 || b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09) { i += 1 }
            return i > start
        }
    }

    private mutating func skipStringFast() -> Bool {
        i += 1
        while i < b.count {
            if b[i] == UInt8(ascii: "\\") { i += 2; continue }
            if b[i] == UInt8(ascii: "\"") { i += 1; return true }
            i += 1
        }
        return false
    }

    mutating func readString() -> String? {
        guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
        i += 1
        // Most strings (keys, ids, names) have no escapes: made straight from the bytes.
        let start = i
        while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "\\") { i += 1 }
        if i < b.count, b[i] == UInt8(ascii: "\"") {
            i += 1
            return String(decoding: b[start..<(i - 1)], as: UTF8.self)
        }
        var out = Array(b[start..<i])
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < b.count else { return nil }
            let e = b[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return nil }
                if scalar >= 0xD800 && scalar < 0xDC00, i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                    i += 2
                    guard let low = hex4(), low >= 0xDC00 && low < 0xE000 else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8))
            default: out.append(e) // \" \\ \/
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            v = v * 16 + d
        }
        i += 4
        return v
    }
}

/// One protocol frame's top-level members, located in one pass (`JSONScan.memberRanges`)
/// and looked up by comparing key bytes: the frames' keys are plain ASCII, so no strings or
/// dictionary are built for the lines a busy pool reads by the thousand.
struct Frame {
    let line: [UInt8]
    private let members: [(key: Range<Int>, value: Range<Int>)]

    init?(_ line: [UInt8]) {
        var scan = JSONScan(line)
        guard let members = scan.memberRanges() else { return nil }
        self.line = line
        self.members = members
    }

    /// The raw value of `key` (the last one when repeated, as a JSON parser keeps it).
    subscript(_ key: StaticString) -> Range<Int>? {
        let n = key.utf8CodeUnitCount
        let k = key.utf8Start
        var found: Range<Int>?
        for m in members where m.key.count == n {
            var same = true
            for j in 0..<n where line[m.key.lowerBound + j] != k[j] {
                same = false
                break
            }
            if same { found = m.value }
        }
        return found
    }

    /// The string value of `key`, decoded.
    func string(_ key: StaticString) -> String? { self[key].flatMap { JSONScan.string(in: line, $0) } }
}

/// Appends JSON text to an NDJSON frame on one line: in valid JSON a CR or LF can only be
/// whitespace between tokens (inside strings they are escaped), so each becomes a space.
/// The host passes arguments as the client sent them, pretty-printed or not.
func appendOneLine<C: Collection>(_ frame: inout [UInt8], _ json: C) where C.Element == UInt8 {
    let start = frame.count
    frame.append(contentsOf: json)
    for k in start..<frame.count where frame[k] == 0x0A || frame[k] == 0x0D { frame[k] = 0x20 }
}

/// JSON text of a Swift string (quotes and escapes).
func jsonQuote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}
