import Foundation
import PylonCore
import PylonJSON

/// Converts between JSON rows and typed SQL values for one entity, using the manifest's
/// field types: booleans go out as `true`/`false` whatever the store keeps, ints as
/// integers, floats as floats. Every write is type-checked here before any SQL runs.
public struct RowCodec: Sendable {
    public let entity: Entity
    let dialect: SQLDialect
    /// `"id", "f1", "f2"...` — every SELECT of this entity uses exactly this column list,
    /// so rows decode by position.
    public let selectList: String
    /// `SELECT <selectList> FROM <entity> WHERE id = <placeholder 1>`: the point read, built
    /// once (it is the statement cache's key on every get by id).
    let selectByID: String
    let fieldIndex: [String: Int]

    public init(entity: Entity, dialect: SQLDialect) {
        self.entity = entity
        self.dialect = dialect
        selectList = (["id"] + entity.fields.map(\.name)).map { dialect.quote($0) }.joined(separator: ", ")
        selectByID = "SELECT \(selectList) FROM \(dialect.quote(entity.name)) WHERE \(dialect.quote("id")) = \(dialect.placeholder(1))"
        var idx: [String: Int] = [:]
        for (i, f) in entity.fields.enumerated() { idx[f.name] = i }
        fieldIndex = idx
    }

    /// A stored row (id + fields, in select-list order) as a JSON object.
    public func decode(_ row: [SQLValue]) -> JSONValue {
        var pairs: [(String, JSONValue)] = []
        pairs.reserveCapacity(row.count)
        // A store returns what was selected; a short row (a broken plugin) reads as nulls
        // rather than trapping.
        pairs.append(("id", row.isEmpty ? .null : Self.plain(row[0])))
        for (i, f) in entity.fields.enumerated() {
            pairs.append((f.name, i + 1 < row.count ? decodeValue(row[i + 1], f) : .null))
        }
        return .object(pairs)
    }

    func decodeValue(_ v: SQLValue, _ f: Field) -> JSONValue {
        switch (v, f.type?.storage) {
        case (.null, _): return .null
        case let (.int(i), .boolean?): return .bool(i != 0)
        case let (.int(i), .real?): return .double(Double(i))
        case let (.text(s), .boolean?): return .bool(s == "true" || s == "t" || s == "1")
        default: return Self.plain(v)
        }
    }

    static func plain(_ v: SQLValue) -> JSONValue {
        switch v {
        case .null: return .null
        case let .int(i): return .int(i)
        case let .double(d): return .double(d)
        case let .text(s): return .string(s)
        case let .blob(b): return .string(Data(b).base64EncodedString())
        }
    }

    /// Checks one incoming value against its field and converts it for binding.
    public func encode(_ value: JSONValue, for f: Field) throws(HostError) -> SQLValue {
        guard let type = f.type else { throw HostError.badRequest("INVALID_DATA", "field \"\(f.name)\" has an unknown type") }
        if value.isNull {
            guard f.optional else {
                throw HostError.badRequest("INVALID_DATA", "field \"\(f.name)\" of \(entity.name) is required and cannot be null")
            }
            return .null
        }
        func wrong(_ expected: String) -> HostError {
            HostError.badRequest("INVALID_DATA", "field \"\(f.name)\" of \(entity.name) must be \(expected), got \(value.typeName)")
        }
        switch type {
        case .string, .richtext, .datetime, .id:
            guard let s = value.stringValue else { throw wrong("a string") }
            return .text(s)
        case .int:
            guard let i = value.intValue else { throw wrong("an integer") }
            return .int(i)
        case .float:
            guard let d = value.doubleValue else { throw wrong("a number") }
            return .double(d)
        case .bool:
            guard let b = value.boolValue else { throw wrong("true or false") }
            return dialect.bind(b)
        }
    }

    /// The JSON form of a value as it will read back after storage.
    func normalized(_ value: JSONValue, for f: Field) -> JSONValue {
        switch (value, f.type) {
        case let (.int(i), .float?): return .double(Double(i))
        case (.double, .int?): return value.intValue.map(JSONValue.int) ?? value  // `encode` refused any other
        default: return value
        }
    }

    /// The field called `name`, code point for code point (`JSONValue.sameKey`): a name
    /// merely canonically equivalent to a field's (which Swift's `==` and the index accept)
    /// is no field, as it would be to SQL and to JavaScript.
    public func field(_ name: String) -> Field? {
        guard let i = fieldIndex[name], JSONValue.sameKey(entity.fields[i].name, name) else { return nil }
        return entity.fields[i]
    }

    /// Rejects keys that are not fields (`id` is allowed and ignored, like Pylon).
    public func checkKeys(_ body: [(String, JSONValue)]) throws(HostError) {
        for (k, _) in body where k != "id" && field(k) == nil {
            throw HostError.badRequest("INVALID_COLUMN", "\(entity.name) has no field \"\(k)\"; fields are: \(entity.fields.map(\.name).joined(separator: ", "))")
        }
    }
}
