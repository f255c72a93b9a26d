import Foundation
import PylonCore
import PylonData
import PylonJSON

/// One `ctx.db` operation from a function (Pylon's `db` frame, pylon-core.md §5.2).
struct FnOp: Sendable {
    var op: String
    var entity: String
    var id: String?
    var data: JSONValue?
    var field: String?
    var value: JSONValue?
    var after: String?
    var limit: Int64?
    var relation: String?
    var targetID: String?
    /// The whole operation (schedule fields: fn_name, args, delay_ms, run_at, schedule_id).
    var raw: JSONValue = .null

    static let reads: Set<String> = ["get", "list", "query", "lookup", "paginate", "search", "query_graph"]
    static let writes: Set<String> = ["insert", "update", "delete", "link", "unlink", "schedule", "cancel_schedule", "enqueue_job", "cancel_job", "workflow_start", "workflow_event", "cron_register", "cron_unregister"]

    static func parse(_ bytes: [UInt8]) throws -> FnOp {
        let v: JSONValue
        do {
            v = try JSONParser.parse(bytes)
        } catch {
            throw HostError.badRequest("INVALID_OP", "the db operation is not JSON: \(error)")
        }
        // One pass over the members (a lookup per field walked them ten times: ~6,000
        // instructions of every `ctx.db` call). The last of repeated keys wins, as in a
        // lookup. `==` on these ASCII names is exact: no other string is canonically
        // equivalent to one of them.
        var op: String?, entity: String?, id: String?, data: JSONValue?, field: String?, value: JSONValue?
        var after: String?, limit: Int64?, relation: String?, targetID: String?
        for (key, member) in v.objectValue ?? [] {
            switch key {
            case "op": op = member.stringValue
            case "entity": entity = member.stringValue
            case "id": id = member.stringValue
            case "data": data = member.isNull ? nil : member
            case "field": field = member.stringValue
            case "value": value = member
            case "after": after = member.stringValue
            case "limit": limit = member.intValue
            case "relation": relation = member.stringValue
            case "target_id": targetID = member.stringValue
            default: continue
            }
        }
        guard let op else { throw HostError.badRequest("INVALID_OP", "the db operation has no \"op\"") }
        guard reads.contains(op) || writes.contains(op) || ShardFnOps.ops.contains(op) else {
            throw HostError.badRequest("INVALID_OP", "unknown db operation \"\(op)\"; supported: \((reads.union(writes).union(ShardFnOps.ops)).sorted().joined(separator: ", "))")
        }
        let entityName = entity ?? ""
        if entityName.isEmpty && !op.hasSuffix("schedule") && !op.hasSuffix("_job") && !op.hasPrefix("workflow_") && !op.hasPrefix("cron_") && op != "query_graph"
            && !ShardFnOps.ops.contains(op) {
            throw HostError.badRequest("INVALID_OP", "\(op) needs an entity name")
        }
        return FnOp(op: op, entity: entityName, id: id, data: data, field: field, value: value, after: after, limit: limit,
                    relation: relation, targetID: targetID, raw: v)
    }

    func requireID() throws -> String {
        guard let id, !id.isEmpty else { throw HostError.badRequest("INVALID_OP", "\(op) on \(entity) needs an id (a string)") }
        return id
    }

    /// `lookup` takes any scalar; the data plane's lookup takes the URL's text form.
    func lookupText() throws -> (String, String) {
        guard let field else { throw HostError.badRequest("INVALID_OP", "lookup on \(entity) needs a field name") }
        switch value {
        case let .string(s)?: return (field, s)
        case let .int(i)?: return (field, String(i))
        case let .double(d)?: return (field, String(d))
        case let .bool(b)?: return (field, b ? "true" : "false")
        default: throw HostError.badRequest("INVALID_OP", "lookup on \(entity).\(field) needs a string, number or boolean value")
        }
    }

    /// `link` needs a relation and a target id; `unlink` a relation (it clears the field).
    func linkArguments() throws -> (String, String?) {
        guard let relation, !relation.isEmpty else { throw HostError.badRequest("INVALID_OP", "\(op) on \(entity) needs a relation name") }
        if op == "link" {
            guard let targetID, !targetID.isEmpty else { throw HostError.badRequest("INVALID_OP", "link on \(entity) needs a target id") }
            return (relation, targetID)
        }
        return (relation, nil)
    }

    var linkResultKey: String { op == "link" ? "linked" : "unlinked" }

    /// The function a `schedule` op names.
    func scheduledName() throws -> String {
        guard let name = raw["fn_name"]?.stringValue, !name.isEmpty else {
            throw HostError.badRequest("INVALID_OP", "schedule needs the name of the function to run")
        }
        return name
    }

    func scheduleID() throws -> String {
        guard let id = raw["schedule_id"]?.stringValue, !id.isEmpty else {
            throw HostError.badRequest("INVALID_OP", "cancel needs the id runAfter/runAt returned")
        }
        return id
    }

    var pageLimit: Int64 { min(max(limit ?? 20, 1), 1000) }

    /// The body of `search` (pylon-core.md §2.7) or `query_graph` (§6.3); none is `{}`.
    var body: JSONValue { data ?? .object([]) }
}

/// Runs `FnOp`s with the data service, under `auth`'s policies (admin for privileged
/// functions). Results have Pylon's shapes: rows, `{"id"}`, `{"updated"}`, `{"deleted"}`,
/// `{"page","nextCursor","isDone"}`, `{"hits","facetCounts","total","tookMs"}` (search, with
/// `/api/search`'s rules), `{"E": [row]}` (query_graph, as `POST /api/query`).
struct FnOps: Sendable {
    let data: DataService
    /// The function registry, for `ctx.workflows.start` (which names must be workflows) and
    /// `ctx.cron.register` (which must be mutations or actions).
    let functions: FunctionService
    let auth: AuthContext

    /// A `get` without a Task: a point read, so answered on the calling thread when the
    /// store allows it (`DataService.get(done:)`), else on a reader thread.
    func get(_ op: FnOp, done: @escaping @Sendable (Result<JSONValue, Error>) -> Void) {
        let id: String
        do {
            id = try op.requireID()
        } catch {
            done(.failure(error))
            return
        }
        data.get(op.entity, id: id) { result in
            done(result.flatMap { row in Result { try readable(op.entity, row) } })
        }
    }

    /// Outside a transaction: reads on read connections; writes (actions only) each in
    /// their own write transaction.
    func run(_ op: FnOp, readOnly: Bool) async throws -> JSONValue {
        switch op.op {
        case "get":
            return try await withCheckedThrowingContinuation { cont in get(op) { cont.resume(with: $0) } }
        case "list":
            return .array(try await data.readableQuery(op.entity, filter: nil, auth: auth))
        case "query":
            return .array(try await data.readableQuery(op.entity, filter: op.data ?? .object([]), auth: auth))
        case "lookup":
            let (field, text) = try op.lookupText()
            return try await data.lookup(op.entity, field: field, value: text, auth: auth) ?? .null
        case "paginate":
            _ = try data.codec(op.entity)
            return pageJSON(try await data.readablePage(op.entity, after: op.after, limit: op.pageLimit, auth: auth))
        case "search":
            return try await data.search(op.entity, op.body, auth: auth)
        case "query_graph":
            return try await data.graphQuery(op.body, auth: auth)
        default:
            if readOnly {
                throw HostError(status: 400, code: "READ_ONLY", message: "ctx.db.\(op.op) is not available in a query; use a mutation")
            }
            switch op.op {
            case "insert":
                let row = try await data.insert(op.entity, op.data ?? .null, auth: auth)
                return .object([("id", row["id"] ?? .null)])
            case "schedule":
                let name = try op.scheduledName()
                let at = try FunctionScheduler.runAt(op)
                let args = op.raw["args"] ?? .object([])
                let id = try await data.store.write { tx in try FunctionScheduler.insert(tx, name: name, args: args, runAt: at) }
                return .object([("scheduled", true), ("id", .string(id))])
            case "cancel_schedule":
                let id = try op.scheduleID()
                let gone = try await data.store.write { tx in try FunctionScheduler.delete(tx, id: id) }
                return .object([("cancelled", .bool(gone))])
            case "enqueue_job", "cancel_job":
                let functions = functions
                return try await data.store.write { tx in try FnJobOps.run(op, functions: functions, in: tx) }
            case "workflow_start", "workflow_event":
                let functions = functions
                return try await data.store.write { tx in try FnWorkflowOps.run(op, functions: functions, in: tx) }
            case "cron_register", "cron_unregister":
                let functions = functions
                return try await data.store.write { tx in try FnCronOps.run(op, functions: functions, in: tx) }
            case "link", "unlink":
                let (relation, target) = try op.linkArguments()
                do {
                    try await data.link(op.entity, id: try op.requireID(), relation: relation, targetID: target, auth: auth)
                    return .object([(op.linkResultKey, .bool(true))])
                } catch let e as HostError where e.code == "NOT_FOUND" {
                    return .object([(op.linkResultKey, .bool(false))])
                }
            case "update":
                do {
                    _ = try await data.update(op.entity, id: try op.requireID(), op.data ?? .null, auth: auth)
                    return .object([("updated", true)])
                } catch let e as HostError where e.code == "NOT_FOUND" {
                    return .object([("updated", false)])
                }
            default:
                do {
                    _ = try await data.delete(op.entity, id: try op.requireID(), auth: auth)
                    return .object([("deleted", true)])
                } catch let e as HostError where e.code == "NOT_FOUND" {
                    return .object([("deleted", false)])
                }
            }
        }
    }

    /// Inside a mutation's write transaction (reads see its own writes).
    /// Applies inserts a mutation made optimistically, with the ids it was given.
    func applyHeld(_ held: [(op: FnOp, id: String)], in tx: WriteTransaction) throws {
        let guardian = WriteGuard(policies: data.policies, auth: auth)
        for (op, id) in held {
            _ = try DataService.insert(tx, try data.codec(op.entity), try DataService.object(op.data ?? .null), id: id, guardian)
        }
    }

    func run(_ op: FnOp, in tx: WriteTransaction) throws -> JSONValue {
        let conn = tx.connection
        let guardian = WriteGuard(policies: data.policies, auth: auth)
        switch op.op {
        case "get":
            let id = try op.requireID()
            return try readable(op.entity, try DataService.fetch(tx, try data.codec(op.entity), id: id))
        case "list":
            return .array(try data.readableQuery(op.entity, filter: nil, auth: auth, on: conn))
        case "query":
            return .array(try data.readableQuery(op.entity, filter: op.data ?? .object([]), auth: auth, on: conn))
        case "lookup":
            let (field, text) = try op.lookupText()
            return try data.lookup(op.entity, field: field, value: text, auth: auth, on: conn) ?? .null
        case "paginate":
            _ = try data.codec(op.entity)
            return pageJSON(try data.readablePage(op.entity, after: op.after, limit: op.pageLimit, auth: auth, on: conn))
        case "search":
            return try data.search(op.entity, op.body, auth: auth, on: conn)
        case "query_graph":
            return try data.graphQuery(op.body, auth: auth, on: conn)
        case "insert":
            let row = try DataService.insert(tx, try data.codec(op.entity), try DataService.object(op.data ?? .null),
                                             id: RowID.generate(), guardian)
            return .object([("id", row["id"] ?? .null)])
        case "update":
            let codec = try data.codec(op.entity)
            let id = try op.requireID()
            do {
                _ = try DataService.update(tx, codec, id: id, try DataService.object(op.data ?? .null), guardian)
            } catch let e as HostError where e.code == "NOT_FOUND" {
                return .object([("updated", false)]) // absent, or hidden from the caller
            }
            return .object([("updated", true)])
        case "schedule":
            let id = try FunctionScheduler.insert(tx, name: try op.scheduledName(), args: op.raw["args"] ?? .object([]),
                                                  runAt: try FunctionScheduler.runAt(op))
            return .object([("scheduled", true), ("id", .string(id))])
        case "cancel_schedule":
            return .object([("cancelled", .bool(try FunctionScheduler.delete(tx, id: try op.scheduleID())))])
        case "enqueue_job", "cancel_job":
            return try FnJobOps.run(op, functions: functions, in: tx)
        case "workflow_start", "workflow_event":
            return try FnWorkflowOps.run(op, functions: functions, in: tx)
        case "cron_register", "cron_unregister":
            return try FnCronOps.run(op, functions: functions, in: tx)
        case "link", "unlink":
            let (relation, target) = try op.linkArguments()
            let found = try DataService.link(tx, try data.codec(op.entity), id: try op.requireID(), relation: relation,
                                             targetID: target, guardian)
            return .object([(op.linkResultKey, .bool(found))])
        default:
            let codec = try data.codec(op.entity)
            let id = try op.requireID()
            do {
                _ = try DataService.delete(tx, codec, id: id, guardian)
            } catch let e as HostError where e.code == "NOT_FOUND" {
                return .object([("deleted", false)]) // absent, or hidden from the caller
            }
            return .object([("deleted", true)])
        }
    }

    /// A single row as the caller may see it: null both when absent and when hidden (as
    /// the HTTP routes answer 404 for both); POLICY_DENIED only when the caller may read no
    /// row of the entity.
    private func readable(_ entity: String, _ row: JSONValue?) throws -> JSONValue {
        guard let row, data.canRead(entity, row, auth: auth) else {
            try data.requireReadGate(entity, auth: auth)
            return .null
        }
        return row
    }

    /// A page of readable rows (`DataService.readablePage`) as `ctx.db.paginate` returns it.
    private func pageJSON(_ page: (rows: [JSONValue], hasMore: Bool)) -> JSONValue {
        .object([
            ("page", .array(page.rows)),
            ("nextCursor", page.hasMore ? (page.rows.last?["id"] ?? .null) : .null),
            ("isDone", .bool(!page.hasMore)),
        ])
    }
}
