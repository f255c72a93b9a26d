import Foundation

/// Where the replica has read the host's change log up to; `epoch` names the host's database.
public struct Cursor: Sendable, Hashable {
    public var lastSeq: Int64
    public var epoch: String?

    public init(lastSeq: Int64, epoch: String? = nil) {
        self.lastSeq = lastSeq
        self.epoch = epoch
    }

    /// `{"last_seq","epoch"?}` of a pull page or a push answer.
    init?(json: JSON?) {
        guard let seq = json?["last_seq"]?.intValue else { return nil }
        self.init(lastSeq: seq, epoch: json?["epoch"]?.stringValue)
    }
}

public enum ChangeKind: String, Sendable {
    case insert, update, delete
}

/// One event of the host's change log (a pull page entry or a WebSocket frame).
public struct ChangeEvent: Sendable {
    public var seq: Int64
    public var entity: String
    public var rowId: String
    public var kind: ChangeKind
    public var data: Row?

    public init(seq: Int64, entity: String, rowId: String, kind: ChangeKind, data: Row? = nil) {
        self.seq = seq
        self.entity = entity
        self.rowId = rowId
        self.kind = kind
        self.data = data
    }

    /// Reads `{"seq","entity","row_id","kind","data"?}`; nil for anything else.
    init?(json: JSON) {
        guard json["type"] == nil, let seq = json["seq"]?.intValue, let entity = json["entity"]?.stringValue,
              let rowId = json["row_id"]?.stringValue, let kind = json["kind"]?.stringValue.flatMap(ChangeKind.init)
        else { return nil }
        self.init(seq: seq, entity: entity, rowId: rowId, kind: kind, data: json["data"]?.objectValue)
    }
}

/// A queued write (`POST /api/sync/push` change) with its exactly-once `opId`.
public struct QueuedOp: Sendable, Equatable {
    public var opId: String
    public var entity: String
    public var kind: ChangeKind
    public var rowId: String
    public var data: Row?
    /// Set once the host took the op: the server row id, and the log's newest seq then.
    public var acked: Ack?

    public struct Ack: Sendable, Equatable {
        public var rowId: String
        public var seq: Int64
    }
}

/// A delete the replica has seen: older inserts and updates of the row are ignored.
public struct Tombstone: Sendable, Hashable {
    public var entity: String
    public var id: String
    public var seq: Int64
}

/// Everything a store holds.
public struct StoreSnapshot: Sendable {
    public var rows: [String: [String: Row]] = [:]
    public var tombstones: [Tombstone] = []
    public var cursor: Cursor?
    public var ops: [QueuedOp] = []
}

/// One atomic change of a store: rows and the cursor land together or not at all.
public struct StoreCommit: Sendable {
    public var putRows: [(entity: String, row: Row)] = []
    public var deleteRows: [(entity: String, id: String)] = []
    public var tombstones: [Tombstone] = []
    public var cursor: Cursor?
    public var putOps: [QueuedOp] = []
    public var deleteOps: [String] = []
}

/// The durable state of a client: rows, tombstones, cursor, write queue. `commit` must be
/// atomic, so a crash between storing rows and moving the cursor cannot skip data (the rows
/// come again and are applied again, which is harmless).
public protocol ReplicaStore: Sendable {
    func load() async throws -> StoreSnapshot
    func commit(_ change: StoreCommit) async throws
    /// Forgets rows, tombstones and the cursor (a resync or another user); the write queue
    /// too when `ops`.
    func clear(ops: Bool) async throws
}

/// A store in memory: it outlives a `PylonClient` within the process (a new client on the
/// same store resumes from its cursor with its queued writes). There is no file-backed
/// store yet; an app that needs one implements `ReplicaStore`.
public actor MemoryStore: ReplicaStore {
    private var snapshot = StoreSnapshot()

    public init() {}

    public func load() -> StoreSnapshot { snapshot }

    public func commit(_ c: StoreCommit) {
        for (entity, row) in c.putRows { snapshot.rows[entity, default: [:]][row.id] = row }
        for (entity, id) in c.deleteRows { snapshot.rows[entity]?[id] = nil }
        for t in c.tombstones {
            snapshot.tombstones.removeAll { $0.entity == t.entity && $0.id == t.id }
            snapshot.tombstones.append(t)
        }
        for op in c.putOps {
            if let i = snapshot.ops.firstIndex(where: { $0.opId == op.opId }) { snapshot.ops[i] = op } else { snapshot.ops.append(op) }
        }
        if !c.deleteOps.isEmpty {
            let gone = Set(c.deleteOps)
            snapshot.ops.removeAll { gone.contains($0.opId) }
        }
        if let cursor = c.cursor { snapshot.cursor = cursor }
    }

    public func clear(ops: Bool) {
        snapshot.rows = [:]
        snapshot.tombstones = []
        snapshot.cursor = nil
        if ops { snapshot.ops = [] }
    }
}
