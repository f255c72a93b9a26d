import PylonJSON

/// One decoded RESP3 reply, as `pylon.cache/1` hands it back to the host.
package enum RESPValue: Equatable, Sendable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case double(Double)
    case boolean(Bool)
    case array([RESPValue])
    case set([RESPValue])
    case map([(RESPValue, RESPValue)])

    package static func == (a: RESPValue, b: RESPValue) -> Bool {
        switch (a, b) {
        case let (.simple(x), .simple(y)), let (.error(x), .error(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.bulk(x), .bulk(y)): return x == y
        case (.null, .null): return true
        case let (.double(x), .double(y)): return x == y
        case let (.boolean(x), .boolean(y)): return x == y
        case let (.array(x), .array(y)), let (.set(x), .set(y)): return x == y
        case let (.map(x), .map(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The text of a string-ish reply (bulk strings decoded as UTF-8, lossy).
    package var text: String? {
        switch self {
        case let .simple(s): return s
        case let .bulk(b): return String(decoding: b, as: UTF8.self)
        case let .integer(i): return String(i)
        case let .double(d): return String(d)
        default: return nil
        }
    }

    /// The reply as JSON: maps become objects, sets and arrays arrays, doubles numbers
    /// (infinities as the strings "inf"/"-inf"), null null.
    package var json: JSONValue {
        switch self {
        case let .simple(s): return .string(s)
        case let .error(e): return .string(e)
        case let .integer(i): return .int(i)
        case let .bulk(b): return .string(String(decoding: b, as: UTF8.self))
        case .null: return .null
        case let .double(d): return d.isFinite ? .double(d) : .string(d.isNaN ? "nan" : (d > 0 ? "inf" : "-inf"))
        case let .boolean(b): return .bool(b)
        case let .array(a), let .set(a): return .array(a.map(\.json))
        case let .map(pairs): return .object(pairs.map { ($0.0.text ?? JSONWriter.string($0.0.json), $0.1.json) })
        }
    }

    struct DecodeError: Error {}

    /// Decodes exactly one RESP3 value from `bytes`.
    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> RESPValue {
        var pos = 0
        let v = try value(bytes, &pos, depth: 0)
        guard pos == bytes.count else { throw DecodeError() }
        return v
    }

    private static func line(_ b: [UInt8], _ pos: inout Int) throws(DecodeError) -> [UInt8] {
        var i = pos
        while i + 1 < b.count {
            if b[i] == 13 && b[i + 1] == 10 {
                let l = Array(b[pos..<i])
                pos = i + 2
                return l
            }
            i += 1
        }
        throw DecodeError()
    }

    private static func count(_ l: [UInt8]) throws(DecodeError) -> Int {
        guard let n = Int(String(decoding: l, as: UTF8.self)) else { throw DecodeError() }
        return n
    }

    private static func value(_ b: [UInt8], _ pos: inout Int, depth: Int) throws(DecodeError) -> RESPValue {
        guard pos < b.count, depth < 64 else { throw DecodeError() }
        let type = b[pos]
        pos += 1
        let l = try line(b, &pos)
        let text = String(decoding: l, as: UTF8.self)
        switch type {
        case UInt8(ascii: "+"): return .simple(text)
        case UInt8(ascii: "-"): return .error(text)
        case UInt8(ascii: ":"):
            guard let i = Int64(text) else { throw DecodeError() }
            return .integer(i)
        case UInt8(ascii: "_"): return .null
        case UInt8(ascii: "#"): return .boolean(text == "t")
        case UInt8(ascii: ","):
            switch text {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan": return .double(.nan)
            default:
                guard let d = Double(text) else { throw DecodeError() }
                return .double(d)
            }
        case UInt8(ascii: "$"), UInt8(ascii: "="):
            let n = try count(l)
            if n < 0 { return .null }
            guard pos + n + 2 <= b.count else { throw DecodeError() }
            var data = Array(b[pos..<(pos + n)])
            pos += n + 2
            if type == UInt8(ascii: "="), data.count >= 4 { data.removeFirst(4) } // "txt:"
            return .bulk(data)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let n = try count(l)
            if n < 0 { return .null }
            var items: [RESPValue] = []
            for _ in 0..<n { items.append(try value(b, &pos, depth: depth + 1)) }
            return type == UInt8(ascii: "~") ? .set(items) : .array(items)
        case UInt8(ascii: "%"):
            let n = try count(l)
            var pairs: [(RESPValue, RESPValue)] = []
            for _ in 0..<max(0, n) {
                let k = try value(b, &pos, depth: depth + 1)
                pairs.append((k, try value(b, &pos, depth: depth + 1)))
            }
            return .map(pairs)
        default:
            throw DecodeError()
        }
    }
}
