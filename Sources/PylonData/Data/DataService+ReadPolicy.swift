import Foundation
import PylonCore
import PylonJSON

/// Reads as the read policies allow: the per-row check, and the plan of a filtered read
/// (`ReadPlan`: the rule in SQL where it compiles, else checked row by row).
extension DataService {
    /// Whether `auth` may read `row` of `entity`.
    public func canRead(_ entity: String, _ row: JSONValue?, auth: AuthContext) -> Bool {
        policies.check(.read, entity: entity, PolicyInput(auth: auth, data: row))
    }

    /// A filtered query as `auth` may see it. With a row-dependent read rule, `$limit` and
    /// `$offset` count readable rows only (they are applied after the policy, so a page is
    /// never short because of rows the caller cannot see); the scan then reads matching
    /// rows until it has the page, every one of them if the caller can read too few, which
    /// is the price of a rule SQL does not evaluate. Only the page is held in memory.
    public func readableQuery(_ entity: String, filter: JSONValue?, auth: AuthContext) async throws -> [JSONValue] {
        let plan = try readPlan(entity, filter: filter, auth: auth)
        guard plan.perRow else { return try await query(entity, filter: plan.filter, rule: plan.rule) }
        let q = try compileQuery(entity, filter: plan.filter, rule: plan.rule)
        return try await store.read { conn in try plan.scan(q, on: conn, self, entity, auth) }
    }

    /// `readableQuery` on a given connection (a function mutation's write transaction).
    package func readableQuery(_ entity: String, filter: JSONValue?, auth: AuthContext, on conn: StoreConnection) throws -> [JSONValue] {
        let plan = try readPlan(entity, filter: filter, auth: auth)
        guard plan.perRow else { return try query(entity, filter: plan.filter, rule: plan.rule, on: conn) }
        return try plan.scan(try compileQuery(entity, filter: plan.filter, rule: plan.rule), on: conn, self, entity, auth)
    }

    /// How a filtered read is run for `auth`: as is; with the read rule ANDed in SQL
    /// (`rule`); or, for a rule SQL cannot evaluate, without `$limit`/`$offset`, which are
    /// then applied to the rows that pass the per-row check.
    package struct ReadPlan {
        var filter: JSONValue?
        var rule: RowPredicate? = nil
        var perRow: Bool
        var limit: Int64?
        var offset: Int64

        /// Runs `q` (this plan's filter, compiled) checking each row as the store sends it:
        /// rows the caller may not read, and the first `offset` it may, are dropped at once,
        /// and the read stops once `limit` rows are kept. Before, every matching row was
        /// held first: one `limit=1` list of a table an outsider had filled with 100 MB of
        /// rows nobody may read held all of them (outside probe `dataplane` F4).
        func scan(_ q: DataService.CompiledQuery, on conn: StoreConnection, _ data: DataService, _ entity: String,
                  _ auth: AuthContext) throws -> [JSONValue] {
            if limit == 0 { return [] }
            var kept: [JSONValue] = []
            var skipped: Int64 = 0
            let (limit, offset) = (limit, offset)
            try DataService.mappingSearchErrors(q) {
                try conn.execute(q.sql, q.params) { raw in
                    let row = q.codec.decode(raw)
                    guard data.canRead(entity, row, auth: auth) else { return .next }
                    if skipped < offset {
                        skipped += 1
                        return .next
                    }
                    kept.append(row)
                    return limit.map { Int64(kept.count) >= $0 } == true ? .stop : .next
                }
            }
            return kept
        }
    }

    package func readPlan(_ entity: String, filter: JSONValue?, auth: AuthContext) throws -> ReadPlan {
        let codec = try codec(entity)
        switch policies.readFilter(entity: codec.entity, auth: auth, dialect: dialect) {
        case .denyAll: throw HostError.policyDenied("read", entity)
        case .allowAll: return ReadPlan(filter: filter, perRow: false, limit: nil, offset: 0)
        case let .sql(rule): return ReadPlan(filter: filter, rule: rule, perRow: false, limit: nil, offset: 0)
        case .perRow:
            var limit: Int64?
            var offset: Int64 = 0
            var rest: [(String, JSONValue)] = []
            for (k, v) in filter?.objectValue ?? [] {
                switch k {
                case "$limit":
                    guard let n = v.intValue, n >= 0 else { throw HostError.badRequest("INVALID_QUERY", "$limit must be a non-negative integer") }
                    limit = n
                case "$offset":
                    guard let n = v.intValue, n >= 0 else { throw HostError.badRequest("INVALID_QUERY", "$offset must be a non-negative integer") }
                    offset = n
                default: rest.append((k, v))
                }
            }
            if let filter, filter.objectValue == nil {
                throw HostError.badRequest("INVALID_QUERY", "the filter must be a JSON object, got \(filter.typeName)")
            }
            return ReadPlan(filter: .object(rest), perRow: true, limit: limit, offset: offset)
        }
    }

    /// 403 unless `auth` could read at least some rows of `entity`.
    public func requireReadGate(_ entity: String, auth: AuthContext) throws(HostError) {
        if policies.readGate(entity: entity, auth: auth) == .denyAll { throw HostError.policyDenied("read", entity) }
    }
}
