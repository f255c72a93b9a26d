import Foundation

/// The local copy of the host's rows plus the client's queued writes laid over them.
///
/// Server rows change only through `apply(_:cursor:)`, which has the store commit rows,
/// tombstones and cursor together before memory follows, so the cursor never runs ahead of
/// what is stored. The visible rows are the server rows with every queued op applied in
/// order, so dropping a refused op rolls its optimistic change back.
public actor Replica {
    private var rows: [String: [String: Row]] = [:]
    private var tombstones: [String: Int64] = [:]
    public private(set) var cursor: Cursor?
    public private(set) var ops: [QueuedOp] = []
    private var listeners: [UUID: AsyncStream<Set<String>>.Continuation] = [:]
    let store: ReplicaStore

    package init(store: ReplicaStore) { self.store = store }

    private static func key(_ entity: String, _ id: String) -> String { entity + "\u{0}" + id }

    /// Reads the store into memory.
    func load() async throws {
        let snap = try await store.load()
        rows = snap.rows
        tombstones = [:]
        for t in snap.tombstones { tombstones[Self.key(t.entity, t.id)] = t.seq }
        cursor = snap.cursor
        ops = snap.ops
        notify(Set(rows.keys).union(ops.map(\.entity)))
    }

    /// The entities whose visible rows may have changed, one set per change, in order.
    func changes() -> AsyncStream<Set<String>> {
        let (stream, continuation) = AsyncStream<Set<String>>.makeStream()
        let id = UUID()
        listeners[id] = continuation
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        return stream
    }

    private func unsubscribe(_ id: UUID) { listeners[id] = nil }

    private func notify(_ entities: Set<String>) {
        guard !entities.isEmpty else { return }
        for c in listeners.values { c.yield(entities) }
    }

    /// Applies change events and moves the cursor to `cursor`: the store commits first,
    /// then memory follows. Events at or below the current cursor are skipped, and an
    /// insert or update older than a delete of its row never brings the row back.
    package func apply(_ events: [ChangeEvent], cursor next: Cursor) async throws {
        let from = cursor?.lastSeq ?? 0
        var put: [String: (entity: String, row: Row)] = [:]
        var deleted: [String: (entity: String, id: String)] = [:]
        var tombs: [String: Tombstone] = [:]
        for e in events where e.seq > from {
            let k = Self.key(e.entity, e.rowId)
            if e.kind == .delete {
                put[k] = nil
                deleted[k] = (e.entity, e.rowId)
                tombs[k] = Tombstone(entity: e.entity, id: e.rowId, seq: e.seq)
                continue
            }
            let tomb = max(tombstones[k] ?? 0, tombs[k]?.seq ?? 0)
            if e.seq < tomb { continue } // an old write replayed after the delete
            var row: Row = [:]
            if e.kind == .update, deleted[k] == nil { row = put[k]?.row ?? rows[e.entity]?[e.rowId] ?? [:] }
            for (f, v) in e.data ?? [:] { row[f] = v }
            row["id"] = .string(e.rowId)
            deleted[k] = nil
            put[k] = (e.entity, row)
        }
        // Ops the host took whose effect the log now carries leave the overlay.
        let settled = ops.filter { ($0.acked?.seq ?? .max) <= next.lastSeq }
        var commit = StoreCommit()
        commit.putRows = Array(put.values)
        commit.deleteRows = Array(deleted.values)
        commit.tombstones = Array(tombs.values)
        commit.cursor = next
        commit.deleteOps = settled.map(\.opId)
        try await store.commit(commit)
        for (entity, row) in put.values { rows[entity, default: [:]][row.id] = row }
        for (entity, id) in deleted.values { rows[entity]?[id] = nil }
        for (k, t) in tombs { tombstones[k] = t.seq }
        let gone = Set(commit.deleteOps)
        ops.removeAll { gone.contains($0.opId) }
        cursor = next
        notify(Set(events.map(\.entity)).union(settled.map(\.entity)))
    }

    /// Forgets every server row, tombstone and the cursor (resync); the write queue too
    /// when `ops` (another user).
    func reset(ops clearOps: Bool = false) async throws {
        try await store.clear(ops: clearOps)
        let touched = Set(rows.keys).union(clearOps ? ops.map(\.entity) : [])
        rows = [:]
        tombstones = [:]
        cursor = nil
        if clearOps { ops = [] }
        notify(touched)
    }

    /// Stores and applies a change of the write queue (new ops, acks, removals).
    func updateOps(put: [QueuedOp], remove: [String] = []) async throws {
        // An acked op the replica has already read past is settled: its effect is in the rows.
        let seen = cursor?.lastSeq ?? 0
        let isSettled = { (o: QueuedOp) in (o.acked?.seq ?? .max) <= seen }
        var commit = StoreCommit()
        commit.deleteOps = remove + put.filter(isSettled).map(\.opId)
        commit.putOps = put.filter { !isSettled($0) }
        try await store.commit(commit)
        let gone = Set(commit.deleteOps)
        var touched = Set(put.map(\.entity))
        for o in ops where gone.contains(o.opId) { touched.insert(o.entity) }
        ops.removeAll { gone.contains($0.opId) }
        for op in commit.putOps {
            if let i = ops.firstIndex(where: { $0.opId == op.opId }) { ops[i] = op } else { ops.append(op) }
        }
        notify(touched)
    }

    /// The host's row, without queued writes.
    public func serverRow(_ entity: String, _ id: String) -> Row? { rows[entity]?[id] }

    /// The visible rows of `entity`: server rows with the queued writes applied in order.
    public func visible(_ entity: String) -> [Row] {
        var view = rows[entity] ?? [:]
        for op in ops where op.entity == entity {
            switch op.kind {
            case .insert:
                // Once the host's row has arrived it stands in for the optimistic one.
                if let mapped = op.acked?.rowId, view[mapped] != nil { continue }
                var row = op.data ?? [:]
                row["id"] = .string(op.rowId)
                view[op.rowId] = row
            case .update:
                guard var row = view[op.rowId] else { continue }
                for (f, v) in op.data ?? [:] { row[f] = v }
                row["id"] = .string(op.rowId)
                view[op.rowId] = row
            case .delete:
                view[op.rowId] = nil
            }
        }
        return Array(view.values)
    }

    /// Test and tooling hook: moves the cursor in memory only (e.g. to replay events).
    func setCursorForTesting(_ c: Cursor?) { cursor = c }
}
