import Foundation

/// A queued write the host refused; its optimistic change has been rolled back.
public struct Rejection: Sendable {
    public var op: QueuedOp
    public var error: PylonError
}

/// Offline writes: each insert, update and delete is stored in the replica's queue with an
/// `op_id` (and a `_pending_` id for an insert) before anything is sent, shows at once in
/// the replica, and is pushed by `flush`. The host applies each `op_id` once, so an op
/// whose answer was lost is simply sent again. A refused op leaves the queue, which rolls
/// its optimistic change back, and is reported on `rejections`.
actor WriteQueue {
    private let http: HTTP
    private let replica: Replica
    private let clientId = Ids.client()
    private var flushing: Task<Void, Error>?
    private var rejectListeners: [UUID: AsyncStream<Rejection>.Continuation] = [:]
    /// The most ops one push sends.
    private static let maxBatch = 100
    /// Ops per push: halved after a 413 (the batch was over the host's body limit), back to
    /// `maxBatch` once the queue has drained.
    private var batchSize = WriteQueue.maxBatch

    init(http: HTTP, replica: Replica) {
        self.http = http
        self.replica = replica
    }

    func rejections() -> AsyncStream<Rejection> {
        let (stream, continuation) = AsyncStream<Rejection>.makeStream()
        let id = UUID()
        rejectListeners[id] = continuation
        continuation.onTermination = { _ in Task { await self.removeListener(id) } }
        return stream
    }

    private func removeListener(_ id: UUID) { rejectListeners[id] = nil }

    func enqueue(_ kind: ChangeKind, _ entity: String, rowId: String, data: Row?) async throws {
        try await replica.updateOps(put: [QueuedOp(opId: Ids.op(), entity: entity, kind: kind, rowId: rowId, data: data)])
    }

    /// Pushes every pending op, one push at a time; network errors are thrown, ops kept.
    func flush() async throws {
        if let running = flushing { return try await running.value }
        let task = Task { try await self.pushAll() }
        flushing = task
        defer { flushing = nil }
        try await task.value
    }

    private func pushAll() async throws {
        while true {
            let batch = Array(await replica.ops.filter { $0.acked == nil }.prefix(batchSize))
            if batch.isEmpty {
                batchSize = Self.maxBatch
                return
            }
            try await push(batch)
        }
    }

    /// Nothing was decided about the ops: the host was not reached (0), is busy (429) or
    /// failing (5xx), or did not take the caller (401: signed out or a dead key; 403:
    /// refused before looking at the ops). They stay queued and are sent again later, e.g.
    /// after the user signs in again.
    static func undecided(_ status: Int) -> Bool {
        status == 0 || status == 401 || status == 403 || status == 429 || status >= 500
    }

    private func push(_ batch: [QueuedOp]) async throws {
        let changes: [JSON] = batch.map { op in
            var c: [String: JSON] = ["op_id": .string(op.opId), "entity": .string(op.entity),
                                     "kind": .string(op.kind.rawValue), "row_id": .string(op.rowId)]
            if let data = op.data { c["data"] = .object(data) }
            return .object(c)
        }
        let reply: JSON
        do {
            reply = try await http.request("/api/sync/push", body: ["changes": .array(changes), "client_id": .string(clientId)])
        } catch {
            if Self.undecided(error.status) { throw error }
            if error.status == 413 && batch.count > 1 {
                // Too big as one body: the next pushes take half as many ops.
                batchSize = max(1, batch.count / 2)
                return
            }
            // Any other answer refuses the batch as it is (a single op over the limit included).
            try await reject(batch.map { Rejection(op: $0, error: error) })
            return
        }
        var idMap: [String: String] = [:]
        for (k, v) in reply["id_map"]?.objectValue ?? [:] { if let s = v.stringValue { idMap[k] = s } }
        let seq = reply["cursor"]?["last_seq"]?.intValue ?? 0
        let results = reply["results"]?.arrayValue ?? []
        var acked: [QueuedOp] = []
        var rejected: [Rejection] = []
        for (i, op) in batch.enumerated() {
            let r = i < results.count ? results[i] : JSON.null
            if r["status"]?.stringValue == "error" {
                rejected.append(Rejection(op: op, error: PylonError(code: r["code"]?.stringValue ?? "PUSH_REJECTED",
                                                                     message: r["message"]?.stringValue ?? "", status: 400)))
            } else {
                var done = op
                done.acked = .init(rowId: r["row_id"]?.stringValue ?? idMap[op.rowId] ?? op.rowId, seq: seq)
                acked.append(done)
            }
        }
        // Later ops that name a pending id the host has now mapped are rewritten to the server id.
        let sent = Set(batch.map(\.opId))
        let rewritten: [QueuedOp] = await replica.ops.compactMap { o in
            guard !sent.contains(o.opId) else { return nil }
            var m = o
            m.rowId = idMap[o.rowId] ?? o.rowId
            m.data = o.data?.mapValues { v in v.stringValue.flatMap { idMap[$0] }.map(JSON.string) ?? v }
            return m == o ? nil : m
        }
        try await replica.updateOps(put: acked + rewritten)
        try await reject(rejected)
    }

    private func reject(_ rejected: [Rejection]) async throws {
        guard !rejected.isEmpty else { return }
        try await replica.updateOps(put: [], remove: rejected.map(\.op.opId))
        for r in rejected { for c in rejectListeners.values { c.yield(r) } }
    }
}
