import Foundation
import PylonCore
import PylonJSON

/// `POST /api/sync/push` (pylon-core.md §3.6), applied durably and exactly once per
/// `op_id`: the op id is recorded in `_pylon_push_ops` in the same transaction as its
/// change, so a retried op is deduped even across restarts, and a failed op is not
/// recorded, so it can be retried. Optimistic client ids (`_pending_…`) get server ids;
/// the mapping is returned as `id_map`, and later changes in the same push (or a retry)
/// that name a pending id are applied to the server row.
///
/// Both are remembered per caller (`PushScope`): the same `op_id` from two users is two
/// writes, and a pending id resolves only for the caller who created it, so no one learns
/// another user's row ids through `id_map` or writes through another user's pending ids.
public struct PushResult: Sendable {
    public var applied = 0
    public var deduped = 0
    public var errors: [String] = []
    public var idMap: [(String, String)] = []
    public var results: [JSONValue] = []
}

extension DataService {
    /// The most changes one push holds: a batch over it is 413, which our clients answer
    /// by halving their batch (they send 100).
    public static let maxPushChanges = 1000
    /// The most bytes of a client, op or row id: each is stored with every op recorded, so
    /// one push of long ids made hundreds of times its size on disk.
    public static let maxPushIDBytes = 256

    /// Refuses a push whose size or ids would cost the store far more than its body.
    static func checkPushSize(_ changes: [JSONValue], clientID: String?) throws(HostError) {
        guard changes.count <= maxPushChanges else {
            throw HostError(status: 413, code: "PUSH_TOO_LARGE",
                            message: "a push holds at most \(maxPushChanges) changes, got \(changes.count); send them in several pushes")
        }
        if let clientID, clientID.utf8.count > maxPushIDBytes {
            throw HostError.badRequest("INVALID_DATA", "client_id is at most \(maxPushIDBytes) bytes")
        }
        for (i, change) in changes.enumerated() {
            for field in ["op_id", "row_id"] where (change[field]?.stringValue?.utf8.count ?? 0) > maxPushIDBytes {
                throw HostError.badRequest("INVALID_DATA", "changes[\(i)].\(field) is at most \(maxPushIDBytes) bytes")
            }
        }
    }

    public func push(_ body: JSONValue, auth: AuthContext) async throws -> PushResult {
        guard let changes = body["changes"]?.arrayValue else {
            throw HostError.badRequest("INVALID_DATA", "push body must be {\"changes\": [...], \"client_id\"?}")
        }
        if let c = body["client_id"], !c.isNull, c.stringValue == nil {
            throw HostError.badRequest("INVALID_DATA", "client_id must be a string")
        }
        let clientID = body["client_id"]?.stringValue
        try Self.checkPushSize(changes, clientID: clientID)
        let scope = SQLValue.text(PushScope.of(auth))
        let codecs = self.codecs
        let guardian = WriteGuard(policies: policies, auth: auth)
        return try await store.write { tx in
            var out = PushResult()
            var idMap: [String: String] = [:]
            // Op ids applied earlier in this push (→ server row id): a store with deferred
            // writes (D1) cannot read them back from _pylon_push_ops before COMMIT.
            var appliedOps: [String: String] = [:]
            let d = tx.dialect
            for (i, change) in changes.enumerated() {
                let entity = change["entity"]?.stringValue ?? ""
                let kind = change["kind"]?.stringValue ?? ""
                var rowID = change["row_id"]?.stringValue ?? ""
                let opID = change["op_id"]?.stringValue
                if let opID {
                    var seen: SQLValue? = appliedOps[opID].map { .text($0) }
                    if seen == nil {
                        let r = try tx.connection.execute(
                            "SELECT row_id FROM _pylon_push_ops WHERE scope = \(d.placeholder(1)) AND op_id = \(d.placeholder(2))",
                            [scope, .text(opID)])
                        seen = r.rows.first.map { $0.at(0) }
                    }
                    if let seen {
                        out.deduped += 1
                        if case let .text(server) = seen, rowID.hasPrefix("_pending_") {
                            idMap[rowID] = server
                            out.idMap.append((rowID, server))
                        }
                        out.results.append(.object([("index", .int(Int64(i))), ("status", "deduped")]))
                        continue
                    }
                }
                if let mapped = idMap[rowID] {
                    rowID = mapped
                } else if rowID.hasPrefix("_pending_") {
                    // Pylon clients never swap in the server id: a later push names the
                    // pending id again, so resolve it from an earlier push's record.
                    let r = try tx.connection.execute(
                        "SELECT row_id FROM _pylon_push_ops WHERE scope = \(d.placeholder(1)) AND pending_id = \(d.placeholder(2)) LIMIT 1",
                        [scope, .text(rowID)])
                    if case let .text(server)? = r.rows.first?.first {
                        idMap[rowID] = server
                        rowID = server
                    }
                }
                let mark = try tx.savepoint("pylon_push")
                do {
                    guard let codec = codecs[entity] else { throw HostError.entityNotFound(entity) }
                    var serverID = rowID
                    let pendingID = (change["row_id"]?.stringValue).flatMap { $0.hasPrefix("_pending_") && kind == "insert" ? $0 : nil }
                    switch kind {
                    case "insert":
                        guard var data = change["data"], case .object = data else {
                            throw HostError.badRequest("INVALID_DATA", "insert needs data")
                        }
                        data = Self.replacingPendingIDs(data, idMap)
                        serverID = RowID.generate()
                        _ = try Self.insert(tx, codec, try Self.object(data), id: serverID, guardian)
                        if rowID.hasPrefix("_pending_") {
                            idMap[rowID] = serverID
                            out.idMap.append((rowID, serverID))
                        }
                    case "update":
                        guard let data = change["data"], case .object = data else {
                            throw HostError.badRequest("INVALID_DATA", "update needs data")
                        }
                        _ = try Self.update(tx, codec, id: rowID, try Self.object(Self.replacingPendingIDs(data, idMap)), guardian)
                    case "delete":
                        do {
                            _ = try Self.delete(tx, codec, id: rowID, guardian)
                        } catch let e as HostError where e.status == 404 {
                            // Already gone: deleting is idempotent, nothing to log.
                        }
                    default:
                        throw HostError.badRequest("INVALID_DATA", "kind must be insert, update or delete")
                    }
                    if let opID {
                        try tx.connection.execute(
                            "INSERT INTO _pylon_push_ops (scope, op_id, client_id, row_id, pending_id, created_at) VALUES (\((1...6).map { d.placeholder($0) }.joined(separator: ", ")))",
                            [scope, .text(opID), clientID.map { .text($0) } ?? .null, .text(serverID),
                             pendingID.map { .text($0) } ?? .null, .int(Int64(Date().timeIntervalSince1970))],
                            wantRows: false)
                    }
                    try tx.release("pylon_push")
                    if let opID { appliedOps[opID] = serverID }
                    out.applied += 1
                    out.results.append(.object([("index", .int(Int64(i))), ("status", "applied"), ("row_id", .string(serverID))]))
                } catch {
                    try tx.rollback(to: "pylon_push", mark)
                    let h = Self.hostError(error)
                    let label = kind == "insert" ? "insert \(entity)" : "\(kind) \(entity)/\(rowID)"
                    out.errors.append("\(label): \(h.message)")
                    out.results.append(.object([("index", .int(Int64(i))), ("status", "error"),
                                                ("code", .string(h.code)), ("message", .string(h.message))]))
                }
            }
            return out
        }
    }

    /// Replaces string values that are pending ids already mapped in this push.
    package static func replacingPendingIDs(_ data: JSONValue, _ map: [String: String]) -> JSONValue {
        guard !map.isEmpty, case let .object(pairs) = data else { return data }
        return .object(pairs.map { k, v in
            if let s = v.stringValue, let mapped = map[s] { return (k, .string(mapped)) }
            return (k, v)
        })
    }
}
