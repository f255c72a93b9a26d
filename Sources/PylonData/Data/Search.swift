import Dispatch
import PylonCore
import PylonJSON

/// `POST /api/search/E` (pylon-core.md §2.7): full-text match over the entity's
/// `search.text` fields, equality/operator filters, facet counts, sorting on `sortable`
/// fields, and page/page_size paging. Runs in SQL on one read connection, inside one read
/// snapshot, so `total`, `facetCounts` and `hits` describe the same rows.
///
/// Totals, facet counts and hits cover only rows the caller may read: a read rule that
/// depends on the row is ANDed into every statement in SQL (`PolicyEngine.readFilter`).
/// A rule SQL cannot evaluate exactly answers `403 SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY`
/// (as Pylon does for every row-dependent rule), since counting would reveal hidden rows.
extension DataService {
    /// The most values counted per facet, most frequent first.
    package static let maxFacetValues = 100

    public func search(_ entity: String, _ body: JSONValue, auth: AuthContext) async throws -> JSONValue {
        let started = DispatchTime.now().uptimeNanoseconds
        let plan = try searchPlan(entity, body, auth: auth)
        return try await store.read { conn in
            try conn.beginRead()
            defer { try? conn.rollback() }
            return try plan.run(on: conn, started: started)
        }
    }

    /// The same search on a given connection (a function mutation's write transaction,
    /// whose own writes it sees).
    package func search(_ entity: String, _ body: JSONValue, auth: AuthContext, on conn: StoreConnection) throws -> JSONValue {
        let started = DispatchTime.now().uptimeNanoseconds
        return try searchPlan(entity, body, auth: auth).run(on: conn, started: started)
    }

    /// Checks the entity, the caller's read rule and the body, and builds the statements.
    func searchPlan(_ entity: String, _ body: JSONValue, auth: AuthContext) throws -> SearchPlan {
        guard let codec = codecs[entity] else {
            throw HostError(status: 404, code: "ENTITY_NOT_FOUND", message: "entity \"\(entity)\" is not in the manifest; check the name (it is case-sensitive)")
        }
        guard let config = codec.entity.search else {
            throw HostError.badRequest("SEARCH_NOT_CONFIGURED",
                                       "\(entity) is not searchable; add \"search\": {\"text\": [...], \"facets\": [...], \"sortable\": [...]} to the entity in the manifest")
        }
        var rule: RowPredicate?
        switch policies.readFilter(entity: codec.entity, auth: auth, dialect: dialect) {
        case .allowAll: break
        case let .sql(p): rule = p
        case .denyAll:
            throw HostError(status: 403, code: "SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY",
                            message: "the read policy of \(entity) denies this caller every row, so there is nothing to search")
        case .perRow:
            throw HostError(status: 403, code: "SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY",
                            message: "\(entity)'s read rule depends on the row in a way SQL cannot evaluate, so search totals and facet counts would reveal rows you cannot read; use POST /api/query/\(entity) with $search instead")
        }
        let request = try SearchRequest(body, entity: codec.entity, config: config)
        let d = dialect

        var params: [SQLValue] = []
        var join = ""
        var conditions: [String] = []
        var rank: String?
        if let text = request.query {
            guard !config.text.isEmpty else {
                throw HostError.badRequest("INVALID_QUERY", "\(entity) has no search.text fields, so it can be filtered and faceted but not searched for text; send an empty query")
            }
            if let q = d.searchQuery(text) {
                params.append(.text(q))
                let match = d.searchMatch(entity, config, placeholder: d.placeholder(1), raw: false, words: SearchIndex.words(text))
                join = match.join
                if let c = match.condition { conditions.append(c) }
                rank = match.rank
            }
        }
        var compiler = FilterCompiler(codec: codec, dialect: d)
        let filter = try compiler.compile(.object(request.filters), startingParams: params, rule: rule)
        params = filter.params
        if !filter.whereSQL.isEmpty { conditions.append(String(filter.whereSQL.dropFirst(" WHERE ".count))) }
        let from = " FROM \(d.quote(entity))\(join)" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))

        var order: [String] = []
        if let (field, descending) = request.sort { order.append("\(d.quote(field)) \(descending ? "DESC" : "ASC")") }
        if let rank { order.append("\(rank) ASC") }
        order.append("\(d.quote(entity)).\(d.quote("id")) ASC")
        var hitParams = params
        hitParams.append(.int(request.pageSize))
        let limitPH = d.placeholder(hitParams.count)
        hitParams.append(.int(request.page * request.pageSize))
        let offsetPH = d.placeholder(hitParams.count)
        let selectList = (["id"] + codec.entity.fields.map(\.name)).map { "\(d.quote(entity)).\(d.quote($0))" }.joined(separator: ", ")
        let hitsSQL = "SELECT \(selectList)\(from) ORDER BY \(order.joined(separator: ", "))\(d.limitOffset(limit: limitPH, offset: offsetPH))"
        let countSQL = "SELECT COUNT(*)\(from)"
        let facetSQL = request.facets.map { f in
            let col = "\(d.quote(entity)).\(d.quote(f))"
            return (f, "SELECT \(col), COUNT(*)\(from) GROUP BY \(col) ORDER BY COUNT(*) DESC, \(col) ASC\(d.limitOffset(limit: String(Self.maxFacetValues), offset: nil))")
        }
        return SearchPlan(codec: codec, countSQL: countSQL, hitsSQL: hitsSQL, facetSQL: facetSQL, params: params, hitParams: hitParams)
    }

    /// A facet value as an object key: strings as they are, everything else as JSON text.
    package static func facetKey(_ v: JSONValue) -> String {
        if let s = v.stringValue { return s }
        return JSONWriter.string(v)
    }
}

/// A checked search, ready to run: the count, hits and facet statements with their
/// parameters. Run inside one read snapshot (or one transaction), so `total`,
/// `facetCounts` and `hits` describe the same rows.
struct SearchPlan: Sendable {
    let codec: RowCodec
    let countSQL: String
    let hitsSQL: String
    let facetSQL: [(String, String)]
    let params: [SQLValue]
    let hitParams: [SQLValue]

    /// `{hits, facetCounts, total, tookMs}`; `started` (uptime ns) is when the request began.
    func run(on conn: StoreConnection, started: UInt64) throws -> JSONValue {
        let total: Int64
        if case let .int(n)? = try conn.execute(countSQL, params).rows.first?.first { total = n } else { total = 0 }
        let hits = try conn.execute(hitsSQL, hitParams).rows.map(codec.decode)
        var facets: [(String, JSONValue)] = []
        for (f, sql) in facetSQL {
            let field = codec.field(f)
            let counts = try conn.execute(sql, params).rows.map { row -> (String, JSONValue) in
                let value = field.map { codec.decodeValue(row[0], $0) } ?? RowCodec.plain(row[0])
                return (DataService.facetKey(value), RowCodec.plain(row[1]))
            }
            facets.append((f, .object(counts)))
        }
        let tookMs = Int64((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)
        return .object([
            ("hits", .array(hits)),
            ("facetCounts", .object(facets)),
            ("total", .int(total)),
            ("tookMs", .int(tookMs)),
        ])
    }
}

/// The body of `POST /api/search/E`, checked against the entity's search config.
struct SearchRequest {
    static let defaultPageSize: Int64 = 20
    static let maxPageSize: Int64 = 100

    var query: String?
    var filters: [(String, JSONValue)] = []
    var facets: [String] = []
    /// Field and whether descending.
    var sort: (String, Bool)?
    var page: Int64 = 0
    var pageSize: Int64 = defaultPageSize

    init(_ body: JSONValue, entity: Entity, config: SearchConfig) throws(HostError) {
        func bad(_ message: String) -> HostError { HostError.badRequest("INVALID_QUERY", message) }
        guard let pairs = body.objectValue else {
            throw bad("the search body must be a JSON object like {\"query\": \"red shoes\", \"page_size\": 20}, got \(body.typeName)")
        }
        for (key, value) in pairs where !value.isNull {
            switch key {
            case "query":
                guard let s = value.stringValue else { throw bad("query must be a string, got \(value.typeName)") }
                query = s.isEmpty ? nil : s
            case "filters":
                guard let o = value.objectValue else { throw bad("filters must be an object of field: value, got \(value.typeName)") }
                if let k = o.first(where: { $0.0.hasPrefix("$") })?.0 {
                    throw bad("filters take field names only (\(k) is not one); use sort, page and page_size for ordering and paging")
                }
                filters = o
            case "facets":
                guard let items = value.arrayValue else { throw bad("facets must be an array of field names") }
                for item in items {
                    guard let f = item.stringValue, config.facets.contains(f) else {
                        throw bad("facets: \(JSONWriter.string(item)) is not a facet of \(entity.name); its facets are: \(config.facets.joined(separator: ", "))")
                    }
                    if !facets.contains(f) { facets.append(f) }
                }
            case "sort":
                sort = try Self.sort(value, entity: entity, config: config)
            case "page":
                guard let n = value.intValue, n >= 0 else { throw bad("page must be a non-negative integer (0 is the first page)") }
                page = n
            case "page_size", "pageSize":
                guard let n = value.intValue, n >= 1 else { throw bad("page_size must be a positive integer (at most \(Self.maxPageSize))") }
                pageSize = min(n, Self.maxPageSize)
            default:
                throw bad("unknown key \"\(key)\"; a search takes query, filters, facets, sort, page and page_size")
            }
        }
        if page > Int64.max / Self.maxPageSize { throw bad("page is too large") }
    }

    /// `["field", "asc"|"desc"]`, or `{"field": "asc"|"desc"}`.
    static func sort(_ value: JSONValue, entity: Entity, config: SearchConfig) throws(HostError) -> (String, Bool) {
        let field: String?
        let direction: String?
        if let items = value.arrayValue, (1...2).contains(items.count) {
            field = items[0].stringValue
            direction = items.count == 2 ? items[1].stringValue : "asc"
        } else if let o = value.objectValue, o.count == 1 {
            field = o[0].0
            direction = o[0].1.stringValue
        } else {
            field = nil
            direction = nil
        }
        guard let field, let direction, ["asc", "desc"].contains(direction.lowercased()) else {
            throw HostError.badRequest("INVALID_QUERY", "sort must look like [\"field\", \"asc\"] or [\"field\", \"desc\"]")
        }
        guard field == "id" || config.sortable.contains(field) else {
            throw HostError.badRequest("INVALID_QUERY", "sort: \(entity.name) cannot be sorted by \"\(field)\"; its sortable fields are: \(config.sortable.joined(separator: ", "))")
        }
        return (field, direction.lowercased() == "desc")
    }
}
