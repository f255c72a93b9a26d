import PylonCore
import PylonJSON

/// Compiles Pylon's filter object (pylon-core.md §6.1) into a parameterized WHERE clause
/// plus ORDER BY / LIMIT / OFFSET for one entity. Column names are checked against the
/// manifest; every value is a bound parameter.
///
/// Differences from Pylon, on purpose: `{field: null}` matches rows where the field IS
/// NULL (Pylon matched nothing), `$not` is null-safe (`$not: null` = IS NOT NULL, and a
/// NULL column counts as "not equal" to a value), and unknown `$operators` are an error
/// instead of being silently ignored.
public struct CompiledFilter: Sendable {
    /// Goes right after `FROM <table>`: the full-text match of `$search`, else empty.
    public var joinSQL: String = ""
    /// The filter has `$search` (its text may be rejected by the full-text engine).
    public var usesSearch = false
    public var whereSQL: String = ""
    public var params: [SQLValue] = []
    public var orderSQL: String = ""
    public var limit: Int64?
    public var offset: Int64?
}

public struct FilterCompiler {
    let codec: RowCodec
    let dialect: SQLDialect
    private var params: [SQLValue] = []

    /// Most values one filter may compare against (`$in` items and operands together),
    /// well under what every store binds in one statement (PostgreSQL: 65,535; SQLite:
    /// 32,766) with the read rule's own; more: 400 `FILTER_TOO_LARGE`.
    public static let maxValues = 10_000
    /// Longest `$like` text, in UTF-8 bytes; longer: 400 `LIKE_PATTERN_TOO_LONG`. A
    /// substring match costs about the text's length times the pattern's on every store: a
    /// 10,000-byte pattern over one 1 MB row of the caller's own took 9–11 s (outside probe
    /// `dataplane`). The store's `read_timeout_ms` bounds what is left.
    public static let maxLikeBytes = 256

    public init(codec: RowCodec, dialect: SQLDialect) {
        self.codec = codec
        self.dialect = dialect
    }

    private mutating func bind(_ v: SQLValue) -> String {
        params.append(v)
        return dialect.placeholder(params.count)
    }

    /// The field for a filter key; `id` is a text pseudo-field.
    private func column(_ name: String) throws(HostError) -> (String, Field) {
        if name == "id" {
            return (dialect.quote("id"), Field(name: "id", typeName: "string", optional: false, unique: true))
        }
        guard let f = codec.field(name) else {
            throw HostError.badRequest("INVALID_COLUMN", "\(codec.entity.name) has no field \"\(name)\"; fields are: id, \(codec.entity.fields.map(\.name).joined(separator: ", "))")
        }
        return (dialect.quote(name), f)
    }

    /// A comparison operand: typed like the field, but lenient enough for operators
    /// (`$gt: 3` on a float, `$gt: 3.0` on an int, a string compared to a datetime). A value
    /// of another type is refused (400), as the stores disagree on it: SQLite would coerce
    /// `"5"` to 5 for an int column, PostgreSQL fails the statement.
    private func operand(_ v: JSONValue, _ f: Field, _ op: String) throws(HostError) -> SQLValue {
        let storage = f.type?.storage ?? .text
        func mismatch(_ expected: String) -> HostError {
            HostError.badRequest("INVALID_QUERY", "operand of \(op) on \"\(f.name)\" must be \(expected) like the field, got \(v.typeName)")
        }
        switch (v, storage) {
        case (.null, _): return .null
        case let (.bool(b), .boolean): return dialect.bind(b)
        case let (.int(i), .integer): return .int(i)
        case let (.int(i), .real): return .double(Double(i))
        case let (.double(d), .real): return .double(d)
        case (.double, .integer):
            guard let i = v.intValue else { throw mismatch("an integer") }
            return .int(i)
        case let (.string(s), .text): return .text(s)
        case (.array, _), (.object, _):
            throw HostError.badRequest("INVALID_QUERY", "operand of \(op) on \"\(f.name)\" must be a scalar, got \(v.typeName)")
        case (_, .boolean): throw mismatch("true or false")
        case (_, .integer), (_, .real): throw mismatch("a number")
        case (_, .text): throw mismatch("a string")
        }
    }

    /// `rule` (the caller's read rule in SQL, `PolicyEngine.readFilter`) is ANDed after
    /// the filter's own conditions.
    public mutating func compile(_ filter: JSONValue?, startingParams: [SQLValue] = [],
                                 rule: RowPredicate? = nil) throws(HostError) -> CompiledFilter {
        params = startingParams
        var out = CompiledFilter()
        let given = filter?.isNull == false ? filter : nil
        if given == nil && rule == nil { out.params = params; return out }
        var pairs: [(String, JSONValue)] = []
        if let given {
            guard let o = given.objectValue else {
                throw HostError.badRequest("INVALID_QUERY", "the filter must be a JSON object, got \(given.typeName)")
            }
            pairs = o
        }
        var clauses: [String] = []
        var rank: String?
        // `$search` first: its JOIN precedes the WHERE clause, so with positional
        // placeholders its parameter must be bound before any condition's.
        if let text = pairs.last(where: { $0.0 == "$search" })?.1 {
            let match = try searchMatch(text)
            out.joinSQL = match.join
            out.usesSearch = true
            if let c = match.condition { clauses.append(c) }
            rank = match.rank
        }
        for (key, value) in pairs {
            switch key {
            case "$order":
                guard let order = value.objectValue else {
                    throw HostError.badRequest("INVALID_QUERY", "$order must be an object like {\"createdAt\": \"desc\"}")
                }
                var parts: [String] = []
                for (field, dir) in order {
                    let (col, _) = try column(field)
                    let d = (dir.stringValue?.lowercased() == "desc") ? "DESC" : "ASC"
                    parts.append("\(col) \(d)")
                }
                if !parts.isEmpty { out.orderSQL = " ORDER BY " + parts.joined(separator: ", ") + ", \(dialect.quote("id")) ASC" }
            case "$limit":
                guard let n = value.intValue, n >= 0 else {
                    throw HostError.badRequest("INVALID_QUERY", "$limit must be a non-negative integer")
                }
                out.limit = n
            case "$offset":
                guard let n = value.intValue, n >= 0 else {
                    throw HostError.badRequest("INVALID_QUERY", "$offset must be a non-negative integer")
                }
                out.offset = n
            case "$search":
                continue
            default:
                let (col, field) = try column(key)
                clauses.append(contentsOf: try conditions(col, field, value))
            }
        }
        let values = params.count - startingParams.count
        guard values <= Self.maxValues else {
            throw HostError.badRequest("FILTER_TOO_LARGE", "the filter compares against \(values) values ($in items and operands together); at most \(Self.maxValues) are allowed. Split the query")
        }
        if let rule { clauses.append(rule.sql(table: codec.entity.name, dialect) { bind($0) }) }
        if !clauses.isEmpty { out.whereSQL = " WHERE " + clauses.joined(separator: " AND ") }
        if out.orderSQL.isEmpty {
            out.orderSQL = " ORDER BY " + (rank.map { "\($0) ASC, " } ?? "") + "\(dialect.quote("id")) ASC"
        }
        out.params = params
        return out
    }

    /// `$search`: the caller's text is handed to the store's full-text engine as it is
    /// (FTS5 query syntax on SQLite, as in Pylon); the best matches come first unless
    /// `$order` says otherwise.
    private mutating func searchMatch(_ text: JSONValue) throws(HostError) -> SearchMatch {
        let entity = codec.entity
        guard let search = entity.search, !search.text.isEmpty else {
            throw HostError(status: 400, code: "SEARCH_NOT_CONFIGURED",
                            message: "\(entity.name) has no full-text index; add \"search\": {\"text\": [...]} to the entity in the manifest")
        }
        guard let s = text.stringValue else {
            throw HostError.badRequest("INVALID_QUERY", "$search must be a string, got \(text.typeName)")
        }
        // FTS5's operators are no words of the text.
        let words = SearchIndex.allWords(s).filter { !["AND", "OR", "NOT", "NEAR"].contains($0) }
        guard s.utf8.count <= SearchIndex.maxQueryBytes, words.count <= SearchIndex.maxWords else {
            throw HostError.badRequest("SEARCH_TOO_LONG", "$search is \(s.utf8.count) bytes with \(words.count) words; at most \(SearchIndex.maxQueryBytes) bytes and \(SearchIndex.maxWords) words (AND, OR, NOT and NEAR aside) are allowed. Search for fewer words")
        }
        return dialect.searchMatch(entity.name, search, placeholder: bind(.text(s)), raw: true, words: words)
    }

    private mutating func conditions(_ col: String, _ field: Field, _ value: JSONValue) throws(HostError) -> [String] {
        guard let ops = value.objectValue, let first = ops.first, first.0.hasPrefix("$") else {
            if value.isNull { return ["\(col) IS NULL"] }
            if case .array = value {
                throw HostError.badRequest("INVALID_QUERY", "use {\"$in\": [...]} to match \"\(field.name)\" against a list")
            }
            if case .object = value {
                throw HostError.badRequest("INVALID_QUERY", "filter value for \"\(field.name)\" must be a scalar or an operator object like {\"$gt\": 1}")
            }
            return ["\(col) = \(bind(try operand(value, field, "=")))"]
        }
        var out: [String] = []
        for (op, v) in ops {
            switch op {
            case "$not", "$ne":
                if v.isNull { out.append("\(col) IS NOT NULL") } else {
                    out.append(dialect.nullSafeNotEqual(col, bind(try operand(v, field, op))))
                }
            case "$eq":
                if v.isNull { out.append("\(col) IS NULL") } else {
                    out.append("\(col) = \(bind(try operand(v, field, op)))")
                }
            case "$gt": out.append("\(col) > \(bind(try operand(v, field, op)))")
            case "$gte": out.append("\(col) >= \(bind(try operand(v, field, op)))")
            case "$lt": out.append("\(col) < \(bind(try operand(v, field, op)))")
            case "$lte": out.append("\(col) <= \(bind(try operand(v, field, op)))")
            case "$like":
                guard let s = v.stringValue else {
                    throw HostError.badRequest("INVALID_QUERY", "$like on \"\(field.name)\" needs a string")
                }
                // PostgreSQL has no LIKE on numbers or booleans; one answer on every store.
                guard (field.type?.storage ?? .text) == .text else {
                    throw HostError.badRequest("INVALID_QUERY", "$like works on text fields; \"\(field.name)\" is \(field.typeName) (use $eq, $gt, … or $in)")
                }
                guard s.utf8.count <= Self.maxLikeBytes else {
                    throw HostError.badRequest("LIKE_PATTERN_TOO_LONG", "$like on \"\(field.name)\" is \(s.utf8.count) bytes; at most \(Self.maxLikeBytes) bytes of UTF-8 are allowed")
                }
                // Substring match, like Pylon; %, _ and \ in the value match themselves.
                var escaped = ""
                for c in s {
                    if c == "%" || c == "_" || c == "\\" { escaped.append("\\") }
                    escaped.append(c)
                }
                out.append(dialect.likeInsensitive(col, bind(.text("%" + escaped + "%"))))
            case "$in":
                guard let items = v.arrayValue else {
                    throw HostError.badRequest("INVALID_QUERY", "$in on \"\(field.name)\" needs an array")
                }
                if items.isEmpty { out.append("1 = 0"); continue }
                var phs: [String] = []
                var hasNull = false
                for item in items {
                    if item.isNull { hasNull = true; continue }
                    phs.append(bind(try operand(item, field, op)))
                }
                var clause = phs.isEmpty ? "1 = 0" : "\(col) IN (\(phs.joined(separator: ", ")))"
                if hasNull { clause = "(\(clause) OR \(col) IS NULL)" }
                out.append(clause)
            default:
                throw HostError.badRequest("INVALID_QUERY", "unknown operator \(op) on \"\(field.name)\"; use $eq, $not, $gt, $gte, $lt, $lte, $like or $in")
            }
        }
        return out
    }
}
