import PylonCore
import PylonJSON

/// The graph query behind `POST /api/query` and a function's `ctx.db.queryGraph`
/// (pylon-core.md §2.4, §6.3): `{"E": {"where", "include", "limit"}}` → `{"E": [row]}`.
/// Each top-level entity is read as `auth` may (read gate, then the row rule); included
/// related rows are filtered by the target's read rule too (Pylon does not check them),
/// in SQL when the rule compiles (`readableQuery`).
/// Fixed vs Pylon: a has-many include matches the target's `field` against this row's id.
extension DataService {
    /// On one read connection, so every entity and include is read from the same state.
    public func graphQuery(_ body: JSONValue, auth: AuthContext) async throws -> JSONValue {
        let spec = try Self.graphSpec(body)
        return try await store.read { conn in try self.graphQuery(spec, auth: auth, on: conn) }
    }

    /// The same on a given connection (a function mutation's write transaction).
    package func graphQuery(_ body: JSONValue, auth: AuthContext, on conn: StoreConnection) throws -> JSONValue {
        try graphQuery(try Self.graphSpec(body), auth: auth, on: conn)
    }

    private static func graphSpec(_ body: JSONValue) throws(HostError) -> [(String, JSONValue)] {
        guard let spec = body.objectValue else {
            throw HostError.badRequest("INVALID_QUERY", "a graph query must be {\"<Entity>\": {\"where\", \"include\", \"limit\"}}, got \(body.typeName)")
        }
        return spec
    }

    /// The most bytes of rows one graph query answers through belongs-to includes: a row
    /// that many rows reference is answered inside each of them, so an include could
    /// multiply what is stored (300 one-byte comments on a 1 MB note answered 315 MB).
    public static let maxIncludedBytes = 64 << 20

    private func graphQuery(_ spec: [(String, JSONValue)], auth: AuthContext, on conn: StoreConnection) throws -> JSONValue {
        var out: [(String, JSONValue)] = []
        // Belongs-to targets read so far (entity NUL id → the row and its size; nil: none
        // readable), each read once; and the bytes they add to the answer.
        var targets: [String: (row: JSONValue, bytes: Int)?] = [:]
        var includedBytes = 0
        for (entity, q) in spec {
            let codec = try codec(entity)
            guard case .object = q else {
                throw HostError.badRequest("INVALID_QUERY", "\(entity) in a graph query must be an object {\"where\", \"include\", \"limit\"}, got \(q.typeName)")
            }
            if let l = q["limit"], !l.isNull, (l.intValue ?? -1) < 0 {
                throw HostError.badRequest("INVALID_QUERY", "\(entity).limit in a graph query must be a non-negative integer")
            }
            if let inc = q["include"], !inc.isNull, inc.objectValue == nil {
                throw HostError.badRequest("INVALID_QUERY", "\(entity).include in a graph query must be an object of relation names")
            }
            var rows = try readableQuery(entity, filter: Self.limited(q["where"], q["limit"]?.intValue), auth: auth, on: conn)
            for (relName, _) in q["include"]?.objectValue ?? [] {
                guard let rel = codec.entity.relations.first(where: { $0.name == relName }) else { continue }
                for i in rows.indices {
                    if rel.many {
                        guard let id = rows[i]["id"]?.stringValue else { continue }
                        let related = try includedRows(rel.target, .object([(rel.field, .string(id))]), auth: auth, on: conn)
                        rows[i] = rows[i].setting(relName, .array(related))
                    } else if let fk = rows[i][rel.field]?.stringValue {
                        let key = rel.target + "\u{0}" + fk
                        let target: (row: JSONValue, bytes: Int)?
                        if let known = targets[key] {
                            target = known
                        } else {
                            target = try includedRows(rel.target, .object([("id", .string(fk)), ("$limit", 1)]), auth: auth, on: conn).first
                                .map { ($0, JSONWriter.string($0).utf8.count) }
                            targets[key] = target
                        }
                        guard let target else { continue }
                        includedBytes += target.bytes
                        if includedBytes > Self.maxIncludedBytes {
                            throw HostError(status: 400, code: "RESULT_TOO_LARGE",
                                            message: "the rows included through \(entity).\(relName) add up to more than \(Self.maxIncludedBytes >> 20) MiB; ask for fewer rows (limit) or include less")
                        }
                        rows[i] = rows[i].setting(relName, target.row)
                    }
                }
            }
            out.append((entity, .array(rows)))
        }
        return .object(out)
    }

    /// `where` with the query's `limit` as its `$limit` (the smaller one when it has its
    /// own), so the store reads no more rows than are answered: truncating afterwards read
    /// the whole table for `{"E": {"limit": 1}}`.
    package static func limited(_ filter: JSONValue?, _ limit: Int64?) -> JSONValue? {
        guard let limit else { return filter }
        switch filter {
        case nil, .null?:
            return .object([("$limit", .int(limit))])
        case let .object(fields)?:
            guard let own = filter?["$limit"] else { return .object(fields + [("$limit", .int(limit))]) }
            // A `$limit` that is not an integer is left for `readableQuery` to refuse.
            guard let n = own.intValue else { return filter }
            return .object(fields.filter { $0.0 != "$limit" } + [("$limit", .int(min(n, limit)))])
        default:
            return filter  // not a filter: `readableQuery` says so
        }
    }

    /// Related rows `auth` may read: none (not a 403) when it may read no row of `entity`.
    private func includedRows(_ entity: String, _ filter: JSONValue, auth: AuthContext, on conn: StoreConnection) throws -> [JSONValue] {
        if policies.readGate(entity: entity, auth: auth) == .denyAll { return [] }
        return try readableQuery(entity, filter: filter, auth: auth, on: conn)
    }
}
