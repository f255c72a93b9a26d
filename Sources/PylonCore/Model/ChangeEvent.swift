import PylonJSON

/// What a change-log entry records.
public enum ChangeKind: String, Sendable {
    case insert, update, delete
}

/// One committed write, as stored in the durable change log and sent to clients.
/// Wire shape (pylon-core.md §3.1), keys in this order:
/// `{"seq","entity","row_id","kind","data"?,"timestamp"}`. `data` is the full stored row
/// (with `id`) for inserts and updates, and absent for deletes.
public struct ChangeEvent: Sendable {
    public var seq: Int64
    public var entity: String
    public var rowID: String
    public var kind: ChangeKind
    /// The row after the write (insert/update); nil for deletes.
    public var data: JSONValue?
    /// The row before the write (update/delete); kept for read-policy checks, never sent.
    public var before: JSONValue?
    /// Unix seconds of the commit.
    public var timestamp: Int64

    package init(seq: Int64, entity: String, rowID: String, kind: ChangeKind, data: JSONValue?,
                 before: JSONValue?, timestamp: Int64) {
        self.seq = seq
        self.entity = entity
        self.rowID = rowID
        self.kind = kind
        self.data = data
        self.before = before
        self.timestamp = timestamp
    }

    public var json: JSONValue {
        var o: [(String, JSONValue)] = [
            ("seq", .int(seq)), ("entity", .string(entity)), ("row_id", .string(rowID)),
            ("kind", .string(kind.rawValue)),
        ]
        if let data { o.append(("data", data)) }
        o.append(("timestamp", .string("\(timestamp)Z")))
        return .object(o)
    }
}
