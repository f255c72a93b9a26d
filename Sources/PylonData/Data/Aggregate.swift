import PylonCore
import PylonJSON

/// `POST /api/aggregate/E` (pylon-core.md §2.6): counts, sums, averages, min/max and
/// distinct counts, optionally grouped by fields or by time buckets of a datetime field.
/// Runs entirely in SQL; the `where` object is the ordinary filter language. A read rule
/// that depends on the row is ANDed in SQL, so the figures cover only readable rows; one
/// SQL cannot evaluate exactly is refused (403), since the figures would count hidden rows.
/// As in Pylon, a caller with a tenant (an organisation selected) aggregates only its
/// organisation's rows of an entity with an `orgId` field: `where.orgId` is forced to it.
extension DataService {
    public func aggregate(_ entity: String, _ spec: JSONValue, auth: AuthContext) async throws -> JSONValue {
        let codec = try codec(entity)
        var rule: RowPredicate?
        switch policies.readFilter(entity: codec.entity, auth: auth, dialect: dialect) {
        case .allowAll: break
        case let .sql(p): rule = p
        case .denyAll: throw HostError.policyDenied("read", entity)
        case .perRow:
            throw HostError(status: 403, code: "AGGREGATE_REQUIRES_ROW_INDEPENDENT_POLICY",
                            message: "\(entity)'s read rule depends on the row in a way SQL cannot evaluate, so an aggregate would count rows you cannot read; query the rows instead")
        }
        guard let pairs = spec.objectValue else {
            throw HostError.badRequest("INVALID_QUERY", "the aggregate spec must be an object like {\"count\":\"*\",\"groupBy\":[\"status\"]}")
        }
        if let unknown = pairs.first(where: { !Self.aggregateKeys.contains($0.0) }) {
            throw HostError.badRequest("INVALID_QUERY", "unknown aggregate key \"\(unknown.0)\"; use \(Self.aggregateKeys.sorted().joined(separator: ", "))")
        }
        let d = dialect
        func column(_ v: JSONValue, _ what: String) throws(HostError) -> String {
            guard let name = v.stringValue else { throw HostError.badRequest("INVALID_QUERY", "\(what) takes field names") }
            guard name == "id" || codec.field(name) != nil else {
                throw HostError.badRequest("INVALID_COLUMN", "\(entity) has no field \"\(name)\"")
            }
            return name
        }
        func fields(_ key: String) throws(HostError) -> [String] {
            guard let v = spec[key], !v.isNull else { return [] }
            guard let items = v.arrayValue else { throw HostError.badRequest("INVALID_QUERY", "\(key) must be an array of field names") }
            var out: [String] = []
            for item in items { out.append(try column(item, key)) }
            return out
        }
        /// Only what every store can compute: sum/avg of numbers, min/max of anything but
        /// booleans (PostgreSQL has neither SUM of text nor MIN of boolean).
        func check(_ name: String, _ key: String, _ allowed: Set<StorageClass>, _ what: String) throws(HostError) {
            let storage = name == "id" ? StorageClass.text : codec.field(name)?.type?.storage ?? .text
            guard allowed.contains(storage) else {
                throw HostError.badRequest("INVALID_QUERY", "\(key) takes \(what); \"\(name)\" is not one")
            }
        }
        var select: [String] = []
        var groups: [String] = []
        if let g = spec["groupBy"], !g.isNull {
            guard let items = g.arrayValue else { throw HostError.badRequest("INVALID_QUERY", "groupBy must be an array") }
            for item in items {
                if let o = item.objectValue, !o.isEmpty {
                    if let k = o.first(where: { $0.0 != "field" && $0.0 != "bucket" })?.0 {
                        throw HostError.badRequest("INVALID_QUERY", "a groupBy bucket is {\"field\", \"bucket\"}; \"\(k)\" is not a key of it")
                    }
                    let f = try column(item["field"] ?? .null, "groupBy")
                    guard codec.field(f)?.type == .datetime else {
                        throw HostError.badRequest("INVALID_QUERY", "groupBy buckets take a datetime field; \"\(f)\" is not one")
                    }
                    guard let unit = item["bucket"]?.stringValue, let expr = d.timeBucket(d.quote(f), unit) else {
                        throw HostError.badRequest("INVALID_QUERY", "groupBy bucket must be one of hour, day, week, month, year")
                    }
                    select.append("\(expr) AS \(d.quote("\(f)_\(unit)"))")
                    groups.append(expr)
                } else {
                    let f = try column(item, "groupBy")
                    select.append(d.quote(f))
                    groups.append(d.quote(f))
                }
            }
        }
        var measures = 0
        if let c = spec["count"], !c.isNull {
            if c.stringValue == "*" {
                select.append("COUNT(*) AS \(d.quote("count"))")
            } else {
                let f = try column(c, "count")
                select.append("COUNT(\(d.quote(f))) AS \(d.quote("count_\(f)"))")
            }
            measures += 1
        }
        for (key, fn, prefix) in [("sum", "SUM", "sum"), ("avg", "AVG", "avg"), ("min", "MIN", "min"), ("max", "MAX", "max")] {
            for f in try fields(key) {
                if fn == "SUM" || fn == "AVG" {
                    try check(f, key, [.integer, .real], "int or float fields")
                } else {
                    try check(f, key, [.integer, .real, .text], "fields that are not bool")
                }
                select.append("\(fn)(\(d.quote(f))) AS \(d.quote("\(prefix)_\(f)"))")
                measures += 1
            }
        }
        for f in try fields("countDistinct") {
            select.append("COUNT(DISTINCT \(d.quote(f))) AS \(d.quote("count_distinct_\(f)"))")
            measures += 1
        }
        guard select.count <= Self.maxAggregateColumns else {
            throw HostError.badRequest("AGGREGATE_TOO_LARGE", "the aggregate asks for \(select.count) columns (groupBy fields and measures together); at most \(Self.maxAggregateColumns) are allowed")
        }
        guard measures > 0 || !groups.isEmpty else {
            throw HostError.badRequest("INVALID_QUERY", "empty aggregate: ask for count, sum, avg, min, max, countDistinct or groupBy")
        }
        // Ordering and paging keys make no sense for an aggregate; everything else filters.
        if let w = spec["where"], !w.isNull, w.objectValue == nil {
            throw HostError.badRequest("INVALID_QUERY", "where must be an object of field conditions, got \(w.typeName)")
        }
        var filter = (spec["where"]?.objectValue ?? []).filter { !$0.0.hasPrefix("$") }
        if let tenant = auth.tenantID, codec.field(Self.tenantField) != nil {
            // Pylon forces the caller's organisation whatever `where` says of it (§2.6).
            filter.removeAll { $0.0 == Self.tenantField }
            filter.append((Self.tenantField, .string(tenant)))
        }
        var compiler = FilterCompiler(codec: codec, dialect: d)
        let f = try compiler.compile(.object(filter), rule: rule)
        let grouping = groups.isEmpty ? "" : " GROUP BY \(groups.joined(separator: ", ")) ORDER BY \(groups.joined(separator: ", "))"
        let sql = "SELECT \(select.joined(separator: ", ")) FROM \(d.quote(entity))\(f.whereSQL)\(grouping)"
        let params = f.params
        let result: QueryResult
        do {
            result = try await store.read { conn in try conn.execute(sql, params) }
        } catch let e as StoreError where e.message.contains("integer overflow") {
            // SQLite's SUM of 64-bit integers fails rather than wrap or widen.
            throw HostError.badRequest("INVALID_VALUE", "the sum does not fit in a 64-bit integer; sum fewer rows or use avg")
        }
        let rows: [JSONValue] = result.rows.map { row in
            .object(zip(result.columns, row).map { name, value in
                if let field = codec.field(name) { return (name, codec.decodeValue(value, field)) }
                return (name, RowCodec.plain(value))
            })
        }
        return .object([("rows", .array(rows))])
    }

    /// The field an aggregate is scoped to the caller's tenant by (pylon-core.md §2.6).
    package static let tenantField = "orgId"

    /// Most result columns one aggregate may ask for (groupBy fields and measures), well
    /// under what every store allows (PostgreSQL: 1,664 in a select list; SQLite: 2,000).
    package static let maxAggregateColumns = 256

    package static let aggregateKeys: Set<String> = ["count", "sum", "avg", "min", "max", "countDistinct", "groupBy", "where"]
}
