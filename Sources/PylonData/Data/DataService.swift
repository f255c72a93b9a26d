import Foundation
import PylonCore
import PylonJSON

/// The data plane: entity CRUD, queries, lookup, links, batch and transact, all through
/// the store plugin via `StoreThreads`. Every write appends its change-log entry in the
/// same transaction as the row change (`ChangeLog.append`), so the log and the rows can
/// never disagree; events reach subscribers only after commit.
public final class DataService: Sendable {
    public let manifest: Manifest
    package let dialect: SQLDialect
    package let store: StoreThreads
    package let codecs: [String: RowCodec]
    public let policies: PolicyEngine

    package init(manifest: Manifest, dialect: SQLDialect, store: StoreThreads, policies: PolicyEngine) {
        self.manifest = manifest
        self.dialect = dialect
        self.store = store
        self.policies = policies
        var c: [String: RowCodec] = [:]
        for e in manifest.entities { c[e.name] = RowCodec(entity: e, dialect: dialect) }
        codecs = c
    }

    public func codec(_ entity: String) throws(HostError) -> RowCodec {
        guard let c = codecs[entity] else { throw HostError.entityNotFound(entity) }
        return c
    }

    // MARK: Reads

    /// Row `id` of `entity` (nil: no such row) to `done`, exactly once: a point read, so on
    /// the calling thread when the store allows it (`StoreThreads.read(quick:)`).
    package func get(_ entity: String, id: String, done: @escaping @Sendable (Result<JSONValue?, Error>) -> Void) {
        let read: @Sendable (StoreConnection) throws -> JSONValue?
        do {
            read = try rowByID(entity, id: id)
        } catch {
            done(.failure(error))
            return
        }
        store.read(quick: true, read, done: done)
    }

    public func get(_ entity: String, id: String) async throws -> JSONValue? {
        try await withCheckedThrowingContinuation { cont in get(entity, id: id) { cont.resume(with: $0) } }
    }

    /// Reads row `id` of `entity` (nil: no such row) on the connection it is given.
    private func rowByID(_ entity: String, id: String) throws -> @Sendable (StoreConnection) throws -> JSONValue? {
        let codec = try codec(entity)
        return { conn in try conn.execute(codec.selectByID, [.text(id)]).rows.first.map(codec.decode) }
    }

    /// Runs a compiled filter and returns rows; `rule` (the caller's read rule in SQL) is
    /// ANDed into it.
    public func query(_ entity: String, filter: JSONValue?, rule: RowPredicate? = nil) async throws -> [JSONValue] {
        let q = try compileQuery(entity, filter: filter, rule: rule)
        return try await store.read { conn in try Self.mappingSearchErrors(q) { try Self.run(q, on: conn) } }
    }

    /// The same query on a given connection (a function mutation's write transaction).
    package func query(_ entity: String, filter: JSONValue?, rule: RowPredicate? = nil, on conn: StoreConnection) throws -> [JSONValue] {
        let q = try compileQuery(entity, filter: filter, rule: rule)
        return try Self.mappingSearchErrors(q) { try Self.run(q, on: conn) }
    }

    /// Runs `body`; a raw `$search` expression the full-text engine cannot parse is the
    /// caller's 400, not a store failure.
    package static func mappingSearchErrors<T>(_ q: CompiledQuery, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as StoreError where q.usesSearch && e.isStatementError {
            throw HostError.badRequest("INVALID_QUERY", "$search could not be run: \(e.message)")
        }
    }

    package struct CompiledQuery: Sendable {
        var sql: String
        var params: [SQLValue]
        var codec: RowCodec
        var usesSearch: Bool
    }

    package func compileQuery(_ entity: String, filter: JSONValue?, rule: RowPredicate? = nil) throws -> CompiledQuery {
        let codec = try codec(entity)
        var compiler = FilterCompiler(codec: codec, dialect: dialect)
        let f = try compiler.compile(filter, rule: rule)
        var params = f.params
        var limitPH: String?
        var offsetPH: String?
        if let l = f.limit { params.append(.int(l)); limitPH = dialect.placeholder(params.count) }
        if let o = f.offset { params.append(.int(o)); offsetPH = dialect.placeholder(params.count) }
        let sql = "SELECT \(codec.selectList) FROM \(dialect.quote(entity))\(f.joinSQL)\(f.whereSQL)\(f.orderSQL)\(dialect.limitOffset(limit: limitPH, offset: offsetPH))"
        return CompiledQuery(sql: sql, params: params, codec: codec, usesSearch: f.usesSearch)
    }

    package static func run(_ q: CompiledQuery, on conn: StoreConnection) throws -> [JSONValue] {
        try conn.execute(q.sql, q.params).rows.map(q.codec.decode)
    }

    /// Keyset page by id of the rows `auth` may read: readable rows with `id > after`, up
    /// to `limit` (+1 to learn `has_more`). The page holds only readable rows, so the next
    /// cursor (the last row's id) never names a row the caller cannot read.
    public func readablePage(_ entity: String, after: String?, limit: Int64, auth: AuthContext) async throws -> (rows: [JSONValue], hasMore: Bool) {
        Self.trimPage(try await readableQuery(entity, filter: Self.pageFilter(after: after, limit: limit), auth: auth), limit: limit)
    }

    /// `readablePage` on a given connection (a function mutation's write transaction).
    package func readablePage(_ entity: String, after: String?, limit: Int64, auth: AuthContext, on conn: StoreConnection) throws -> (rows: [JSONValue], hasMore: Bool) {
        Self.trimPage(try readableQuery(entity, filter: Self.pageFilter(after: after, limit: limit), auth: auth, on: conn), limit: limit)
    }

    package static func pageFilter(after: String?, limit: Int64) -> JSONValue {
        var filter: [(String, JSONValue)] = [("$limit", .int(limit + 1))]
        if let after { filter.append(("id", .object([("$gt", .string(after))]))) }
        return .object(filter)
    }

    package static func trimPage(_ rows: [JSONValue], limit: Int64) -> (rows: [JSONValue], hasMore: Bool) {
        var rows = rows
        let hasMore = rows.count > Int(limit)
        if hasMore { rows.removeLast(rows.count - Int(limit)) }
        return (rows, hasMore)
    }

    /// First row `auth` may read whose `field` equals `value` (text from the URL, converted
    /// to the field type); nil both when no row has it and when only hidden rows do, so a
    /// lookup tells nothing about rows the caller cannot read. 403 only when the caller may
    /// read no row of `entity` at all.
    public func lookup(_ entity: String, field: String, value: String, auth: AuthContext) async throws -> JSONValue? {
        try requireReadGate(entity, auth: auth)
        guard let filter = try lookupFilter(entity, field: field, value: value) else { return nil }
        return try await readableQuery(entity, filter: filter, auth: auth).first
    }

    /// `lookup` on a given connection (a function mutation's write transaction).
    package func lookup(_ entity: String, field: String, value: String, auth: AuthContext, on conn: StoreConnection) throws -> JSONValue? {
        try requireReadGate(entity, auth: auth)
        guard let filter = try lookupFilter(entity, field: field, value: value) else { return nil }
        return try readableQuery(entity, filter: filter, auth: auth, on: conn).first
    }

    /// The filter `lookup` runs, or nil when `value` cannot match the field's type.
    package func lookupFilter(_ entity: String, field: String, value: String) throws -> JSONValue? {
        let codec = try codec(entity)
        let v: JSONValue
        if field == "id" {
            v = .string(value)
        } else {
            guard let f = codec.field(field) else {
                throw HostError.badRequest("INVALID_COLUMN", "\(entity) has no field \"\(field)\"")
            }
            switch f.type?.storage {
            case .integer?:
                guard let i = Int64(value) else { return nil }
                v = .int(i)
            case .real?:
                guard let d = Double(value) else { return nil }
                v = .double(d)
            case .boolean?:
                guard value == "true" || value == "false" else { return nil }
                v = .bool(value == "true")
            default: v = .string(value)
            }
        }
        return .object([(field, v), ("$limit", 1)])
    }

    // MARK: Writes (each runs inside the writer's transaction)

    /// Inserts a row; `done` gets the stored row (with its new `id`) or the error exactly
    /// once — on the writer thread after commit, or on the caller's when the input is
    /// refused first.
    package func insert(_ entity: String, _ body: JSONValue, auth: AuthContext, done: @escaping @Sendable (Result<JSONValue, Error>) -> Void) {
        let codec: RowCodec
        let data: [(String, JSONValue)]
        do {
            codec = try self.codec(entity)
            data = try Self.object(body)
        } catch {
            done(.failure(error))
            return
        }
        let guardian = WriteGuard(policies: policies, auth: auth)
        store.write(replayable: true, { tx in try Self.insert(tx, codec, data, id: RowID.generate(), guardian) }, done: done)
    }

    public func insert(_ entity: String, _ body: JSONValue, auth: AuthContext) async throws -> JSONValue {
        try await withCheckedThrowingContinuation { cont in insert(entity, body, auth: auth) { cont.resume(with: $0) } }
    }

    public func update(_ entity: String, id: String, _ body: JSONValue, auth: AuthContext) async throws -> JSONValue {
        let codec = try codec(entity)
        let patch = try Self.object(body)
        let guardian = WriteGuard(policies: policies, auth: auth)
        return try await store.write(replayable: true) { tx in try Self.update(tx, codec, id: id, patch, guardian) }
    }

    public func delete(_ entity: String, id: String, auth: AuthContext) async throws -> JSONValue {
        let codec = try codec(entity)
        let guardian = WriteGuard(policies: policies, auth: auth)
        return try await store.write(replayable: true) { tx in try Self.delete(tx, codec, id: id, guardian) }
    }

    package static func object(_ body: JSONValue) throws(HostError) -> [(String, JSONValue)] {
        guard let o = body.objectValue else {
            throw HostError.badRequest("INVALID_DATA", "the body must be a JSON object of field values, got \(body.typeName)")
        }
        return o
    }

    package static func insert(_ tx: WriteTransaction, _ codec: RowCodec, _ data: [(String, JSONValue)], id: String,
                       _ guardian: WriteGuard) throws -> JSONValue {
        try codec.checkKeys(data)
        // A new row may carry an address (it proves nothing: the first proof of it claims
        // the account clean), never a verification stamp.
        try guardian.requireIdentityUntouched(codec.entity.name, data.filter { $0.0 == "emailVerified" && !$0.1.isNull })
        let d = tx.dialect
        var cols = [d.quote("id")]
        var params: [SQLValue] = [.text(id)]
        var row: [(String, JSONValue)] = [("id", .string(id))]
        for f in codec.entity.fields {
            let given = data.last(where: { $0.0 == f.name })?.1
            guard let value = given else {
                if !f.optional {
                    throw HostError.badRequest("MISSING_FIELD", "field \"\(f.name)\" of \(codec.entity.name) is required")
                }
                row.append((f.name, .null))
                continue
            }
            params.append(try codec.encode(value, for: f))
            cols.append(d.quote(f.name))
            row.append((f.name, value.isNull ? .null : codec.normalized(value, for: f)))
        }
        try guardian.require(.insert, codec.entity.name, data: .object(row), existing: nil)
        let phs = (1...params.count).map { d.placeholder($0) }.joined(separator: ", ")
        let sql = "INSERT INTO \(d.quote(codec.entity.name)) (\(cols.joined(separator: ", "))) VALUES (\(phs))"
        let stored = JSONValue.object(row)
        try ChangeLog.write(tx, sql, params, mapError: { mapWriteError($0, codec.entity.name, "INSERT_FAILED") },
                            entity: codec.entity.name, rowID: id, kind: .insert, data: stored, before: nil)
        tx.remember(codec.entity.name, id, stored)
        return stored
    }

    /// The row as this transaction sees it (including its own writes on a deferred-write store).
    package static func fetch(_ tx: WriteTransaction, _ codec: RowCodec, id: String) throws -> JSONValue? {
        if let mine = tx.writtenRow(codec.entity.name, id) { return mine }
        return try tx.connection.execute(codec.selectByID, [.text(id)]).rows.first.map(codec.decode)
    }

    package static func update(_ tx: WriteTransaction, _ codec: RowCodec, id: String, _ patch: [(String, JSONValue)],
                       _ guardian: WriteGuard) throws -> JSONValue {
        try codec.checkKeys(patch)
        let changes = patch.filter { $0.0 != "id" }
        if changes.isEmpty {
            throw HostError.badRequest("INVALID_DATA", "the patch has no fields to update; send at least one field of \(codec.entity.name)")
        }
        try guardian.requireSomeRow(.update, codec.entity.name)
        guard let before = try fetch(tx, codec, id: id) else {
            throw HostError.notFound("\(codec.entity.name) with id \"\(id)\" not found")
        }
        // The rule must allow touching the stored row (Pylon's meaning of `data` on update)
        // before the patch's values are read: a row the caller cannot see answers 404 like a
        // missing one, never a validation error that tells it exists.
        try guardian.requireOnStored(.update, codec, id: id, before)
        let d = tx.dialect
        var sets: [String] = []
        var params: [SQLValue] = []
        var after = before
        for (k, v) in changes {
            let f = codec.field(k)!
            params.append(try codec.encode(v, for: f))
            sets.append("\(d.quote(k)) = \(d.placeholder(params.count))")
            after = after.setting(k, v.isNull ? .null : codec.normalized(v, for: f))
        }
        // Once the caller may see the row (else it stays 404), and only for values that
        // change: a client writing back the row it read, email included, is not refused.
        try guardian.requireIdentityUntouched(codec.entity.name, changes.filter { before[$0.0] != $0.1 })
        // The rule must also allow the row the patch makes, so a patch can never move a row
        // out of its owner's reach (e.g. by rewriting ownerId).
        try guardian.require(.update, codec.entity.name, data: after, existing: before)
        params.append(.text(id))
        let sql = "UPDATE \(d.quote(codec.entity.name)) SET \(sets.joined(separator: ", ")) WHERE \(d.quote("id")) = \(d.placeholder(params.count))"
        try ChangeLog.write(tx, sql, params, mapError: { mapWriteError($0, codec.entity.name, "UPDATE_FAILED") },
                            entity: codec.entity.name, rowID: id, kind: .update, data: after, before: before)
        tx.remember(codec.entity.name, id, after)
        try Organisations.appMembershipChanged(tx, codec.entity, id: id, before: before, after: after)
        return after
    }

    package static func delete(_ tx: WriteTransaction, _ codec: RowCodec, id: String, _ guardian: WriteGuard) throws -> JSONValue {
        try guardian.requireSomeRow(.delete, codec.entity.name)
        guard let before = try fetch(tx, codec, id: id) else {
            throw HostError.notFound("\(codec.entity.name) with id \"\(id)\" not found")
        }
        try guardian.requireOnStored(.delete, codec, id: id, before)
        let d = tx.dialect
        let sql = "DELETE FROM \(d.quote(codec.entity.name)) WHERE \(d.quote("id")) = \(d.placeholder(1))"
        try ChangeLog.write(tx, sql, [.text(id)], mapError: { mapWriteError($0, codec.entity.name, "DELETE_FAILED") },
                            entity: codec.entity.name, rowID: id, kind: .delete, data: nil, before: before)
        tx.remember(codec.entity.name, id, nil)
        try Organisations.appMembershipChanged(tx, codec.entity, id: id, before: before, after: nil)
        return before
    }

    package static func mapWriteError(_ error: Error, _ entity: String, _ fallback: String) -> Error {
        guard let e = error as? StoreError else { return error }
        if e.isUniqueViolation {
            return HostError.uniqueViolation(entity)
        }
        if e.isConstraint { return HostError.badRequest(fallback, "\(entity): \(e.message)") }
        return error
    }

    // MARK: Links

    /// Sets (`targetID` non-nil) or clears the relation's foreign-key field. An ordinary
    /// update, so it is change-logged like any other write.
    public func link(_ entity: String, id: String, relation: String, targetID: String?, auth: AuthContext) async throws {
        let codec = try codec(entity)
        let guardian = WriteGuard(policies: policies, auth: auth)
        try Self.relationField(codec, relation)
        let found = try await store.write(replayable: true) { tx in try Self.link(tx, codec, id: id, relation: relation, targetID: targetID, guardian) }
        if !found { throw HostError.notFound("Source entity not found") }
    }

    /// The foreign-key field of `relation` on `codec`'s entity, or a RELATION_NOT_FOUND error.
    @discardableResult
    package static func relationField(_ codec: RowCodec, _ relation: String) throws(HostError) -> String {
        let entity = codec.entity.name
        guard let rel = codec.entity.relations.first(where: { $0.name == relation }) else {
            throw HostError.badRequest("RELATION_NOT_FOUND", "\(entity) has no relation \"\(relation)\"; relations are: \(codec.entity.relations.map(\.name).joined(separator: ", "))")
        }
        guard codec.field(rel.field) != nil else {
            throw HostError.badRequest("RELATION_NOT_FOUND", "relation \"\(relation)\" of \(entity) names field \"\(rel.field)\", which does not exist")
        }
        return rel.field
    }

    /// Sets or clears the relation's field inside `tx`; false when the source row is absent.
    package static func link(_ tx: WriteTransaction, _ codec: RowCodec, id: String, relation: String, targetID: String?,
                     _ guardian: WriteGuard) throws -> Bool {
        let field = try relationField(codec, relation)
        try guardian.requireSomeRow(.update, codec.entity.name)
        guard try fetch(tx, codec, id: id) != nil else { return false }
        do {
            _ = try update(tx, codec, id: id, [(field, targetID.map { .string($0) } ?? .null)], guardian)
        } catch let e as HostError where e.status == 404 {
            return false // hidden from the caller: answered as absent
        }
        return true
    }

    // MARK: Batch and transact

    /// One operation of `/api/batch` and `/api/transact`.
    public struct Operation: Sendable {
        public var op: String
        public var entity: String
        public var id: String?
        public var data: JSONValue?
    }

    public static func parseOperations(_ items: [JSONValue]) throws(HostError) -> [Operation] {
        var ops: [Operation] = []
        for (i, item) in items.enumerated() {
            guard let op = item["op"]?.stringValue, ["insert", "update", "delete"].contains(op) else {
                throw HostError.badRequest("INVALID_DATA", "operations[\(i)].op must be \"insert\", \"update\" or \"delete\"")
            }
            guard let entity = item["entity"]?.stringValue else {
                throw HostError.badRequest("INVALID_DATA", "operations[\(i)].entity is required")
            }
            if let id = item["id"], !id.isNull, id.stringValue == nil {
                throw HostError.badRequest("INVALID_DATA", "operations[\(i)].id must be a string")
            }
            if let data = item["data"], !data.isNull, data.objectValue == nil {
                throw HostError.badRequest("INVALID_DATA", "operations[\(i)].data must be an object of field values")
            }
            ops.append(Operation(op: op, entity: entity, id: item["id"]?.stringValue, data: item["data"]))
        }
        return ops
    }

    /// Applies one operation inside `tx`; returns the row id it touched.
    package static func apply(_ tx: WriteTransaction, _ codecs: [String: RowCodec], _ op: Operation, _ guardian: WriteGuard) throws -> String {
        guard let codec = codecs[op.entity] else { throw HostError.entityNotFound(op.entity) }
        switch op.op {
        case "insert":
            let id = RowID.generate()
            _ = try insert(tx, codec, try object(op.data ?? .null), id: id, guardian)
            return id
        case "update":
            guard let id = op.id else { throw HostError.badRequest("INVALID_DATA", "update needs an id") }
            _ = try update(tx, codec, id: id, try object(op.data ?? .null), guardian)
            return id
        default:
            guard let id = op.id else { throw HostError.badRequest("INVALID_DATA", "delete needs an id") }
            _ = try delete(tx, codec, id: id, guardian)
            return id
        }
    }

    /// `/api/batch`: every operation independent (its own savepoint), all in one commit.
    public func batch(_ ops: [Operation], auth: AuthContext) async throws -> [Result<String, HostError>] {
        let codecs = self.codecs
        let guardian = WriteGuard(policies: policies, auth: auth)
        return try await store.write { tx in
            var results: [Result<String, HostError>] = []
            for op in ops {
                let mark = try tx.savepoint("pylon_op")
                do {
                    let id = try Self.apply(tx, codecs, op, guardian)
                    try tx.release("pylon_op")
                    results.append(.success(id))
                } catch {
                    try tx.rollback(to: "pylon_op", mark)
                    results.append(.failure(Self.hostError(error)))
                }
            }
            return results
        }
    }

    /// `/api/transact`: all operations or none. Returns per-op results; `committed` false
    /// means everything was rolled back (the failing op carries the error).
    public func transact(_ ops: [Operation], auth: AuthContext) async throws -> (committed: Bool, results: [Result<String, HostError>]) {
        let codecs = self.codecs
        let guardian = WriteGuard(policies: policies, auth: auth)
        do {
            let ids = try await store.write { tx in
                var ids: [String] = []
                for (i, op) in ops.enumerated() {
                    do {
                        ids.append(try Self.apply(tx, codecs, op, guardian))
                    } catch {
                        throw TransactFailure(index: i, done: ids, error: Self.hostError(error))
                    }
                }
                return ids
            }
            return (true, ids.map { .success($0) })
        } catch let f as TransactFailure {
            var results: [Result<String, HostError>] = f.done.map { .success($0) }
            results.append(.failure(f.error))
            return (false, results)
        }
    }

    package struct TransactFailure: Error {
        var index: Int
        var done: [String]
        var error: HostError
    }

    package static func hostError(_ error: Error) -> HostError {
        if let h = error as? HostError { return h }
        if let s = error as? StoreError { return s.answer }
        return HostError(status: 500, code: "INTERNAL", message: "\(error)")
    }
}
