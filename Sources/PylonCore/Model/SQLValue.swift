import PylonPluginABI
import PylonJSON

/// A typed SQL value as it crosses `pylon.store/1`.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])

    public var textValue: String? { if case let .text(s) = self { return s } else { return nil } }
    public var intValue: Int64? { if case let .int(i) = self { return i } else { return nil } }

    /// As JSON, for listings of the host's own tables (a blob as lowercase hex).
    package var json: JSONValue {
        switch self {
        case .null: return .null
        case let .int(i): return .int(i)
        case let .double(d): return .double(d)
        case let .text(s): return .string(s)
        case let .blob(b): return .string(RowID.hex(bytes: b))
        }
    }
}

extension Array where Element == SQLValue {
    /// Column `i` of a result row, or NULL when the store sent fewer columns than the host
    /// selected (a broken plugin must make the host answer with an error, never trap).
    public func at(_ i: Int) -> SQLValue { i >= 0 && i < count ? self[i] : .null }
}
