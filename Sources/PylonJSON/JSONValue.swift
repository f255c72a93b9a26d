#if canImport(Glibc)
import Glibc

#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON document as the host handles it on every path: request bodies, rows, change
/// events, plugin config. Objects keep their key order (rows are emitted id-first, then in
/// manifest field order) and numbers keep the int/double distinction, so `3` stays `3`
/// and `3.0` stays `3.0`, and booleans never turn into `0`/`1`.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Ordered key/value pairs. Duplicate keys are resolved by the parser (last wins).
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.int(a), .double(b)), let (.double(b), .int(a)): return Double(a) == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for (k, v) in a {
                guard let other = b.first(where: { JSONValue.sameKey($0.0, k) }), other.1 == v else { return false }
            }
            return true
        default: return false
        }
    }

    /// Member lookup on objects; nil for missing keys and non-objects.
    public subscript(key: String) -> JSONValue? {
        guard case let .object(pairs) = self else { return nil }
        // By index, comparing each key in place: iterating the pairs copied every member
        // (a retain and release of its key and value) and made a lookup cost ~1,000
        // instructions, ten of them per `ctx.db` operation.
        var i = pairs.endIndex
        while i > pairs.startIndex {
            i -= 1
            if Self.sameKey(pairs[i].0, key) { return pairs[i].1 }
        }
        return nil
    }

    /// Object keys are the same when their code points are (RFC 8259 §8.3, and what
    /// JavaScript's objects do), not when Swift's `==` finds them canonically equivalent:
    /// "\u{212A}ey" (KELVIN SIGN) is not the field "Key", and `{"Key":1,"\u{212A}ey":2}`
    /// has two members here as in a function's `JSON.parse`.
    /// Compared as bytes in place (a native string's UTF-8 is contiguous): a walk through
    /// the two `UTF8View`s measured ~1% of the host's CPU on a function-call path.
    public static func sameKey(_ a: String, _ b: String) -> Bool {
        let au = a.utf8, bu = b.utf8
        guard au.count == bu.count else { return false }
        let same = au.withContiguousStorageIfAvailable { pa in
            bu.withContiguousStorageIfAvailable { pb in
                pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0
            }
        }
        return (same ?? nil) ?? au.elementsEqual(bu)
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }

    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var objectValue: [(String, JSONValue)]? {
        if case let .object(o) = self { return o } else { return nil }
    }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }

    /// Integers, and doubles that hold an exact integer.
    public var intValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    /// A short name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Object with `key` set (replaced in place if present, appended otherwise).
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case var .object(pairs) = self else { return self }
        if let i = pairs.firstIndex(where: { Self.sameKey($0.0, key) }) {
            pairs[i].1 = value
        } else {
            pairs.append((key, value))
        }
        return .object(pairs)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
}
