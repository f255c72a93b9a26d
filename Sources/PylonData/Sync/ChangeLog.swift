import Foundation
import PylonCore
import PylonJSON

/// The durable change log (`_pylon_changes`). Appends happen inside the write transaction
/// of the row change; `seq` is gapless and ordered by commit because one writer assigns it
/// (see SQLiteDialect.bootstrap). The database's `epoch` (random, created with the
/// database) lets a client detect a cursor that belongs to another database.
public final class ChangeLog: Sendable {
    let store: StoreThreads
    let dialect: SQLDialect
    public let epoch: String
    /// Entries kept; older ones are trimmed and their cursors get 410 RESYNC_REQUIRED.
    public let retention: Int64

    package init(store: StoreThreads, dialect: SQLDialect, epoch: String, retention: Int64) {
        self.store = store
        self.dialect = dialect
        self.epoch = epoch
        self.retention = retention
    }

    /// Runs a row write (`rowSQL` with `rowParams`) and appends its change-log entry, in
    /// one statement where the dialect chains them (`chainedChangeSQL`: Postgres), else in
    /// two. `mapError` turns a failure of the row write into the caller's error.
    static func write(_ tx: WriteTransaction, _ rowSQL: String, _ rowParams: [SQLValue], mapError: (Error) -> Error,
                      entity: String, rowID: String, kind: ChangeKind, data: JSONValue?, before: JSONValue?) throws {
        let entry = Entry(entity: entity, rowID: rowID, kind: kind, data: data, before: before)
        if tx.seqByStatement, let chained = tx.dialect.chainedNextChangeSQL(rowSQL, rowParameters: rowParams.count) {
            try tx.startNumbering()
            do {
                try tx.write(chained, rowParams + entry.parameters)
            } catch {
                throw mapError(error)
            }
            tx.events.append(entry.event(WriteTransaction.unnumbered))
            return
        }
        if tx.dialect.appendChangeSQL == nil || tx.defersWrites,
           let chained = tx.dialect.chainedChangeSQL(rowSQL, rowParameters: rowParams.count) {
            let seq = try tx.nextSeq()
            do {
                try tx.write(chained, rowParams + [.int(seq)] + entry.parameters)
            } catch {
                throw mapError(error)
            }
            tx.events.append(entry.event(seq))
            return
        }
        do {
            try tx.write(rowSQL, rowParams)
        } catch {
            throw mapError(error)
        }
        try append(tx, entry)
    }

    static func append(_ tx: WriteTransaction, entity: String, rowID: String, kind: ChangeKind,
                       data: JSONValue?, before: JSONValue?) throws {
        try append(tx, Entry(entity: entity, rowID: rowID, kind: kind, data: data, before: before))
    }

    private static func append(_ tx: WriteTransaction, _ entry: Entry) throws {
        let seq: Int64
        if tx.seqByStatement, let sql = tx.dialect.appendNextChangeSQL {
            try tx.startNumbering()
            try tx.write(sql, entry.parameters)
            seq = WriteTransaction.unnumbered
        } else if let sql = tx.dialect.appendChangeSQL, !tx.defersWrites {
            let r = try tx.connection.execute(sql, entry.parameters)
            guard case let .int(s)? = r.rows.first?.first else {
                throw HostError(status: 500, code: "CHANGELOG_FAILED", message: "the store did not return a seq for the change-log entry")
            }
            seq = s
        } else {
            seq = try tx.nextSeq()
            try tx.write(tx.dialect.appendChangeWithSeqSQL, [.int(seq)] + entry.parameters)
        }
        tx.events.append(entry.event(seq))
    }

    /// One change-log entry before it has a seq.
    private struct Entry {
        var entity: String
        var rowID: String
        var kind: ChangeKind
        var data: JSONValue?
        var before: JSONValue?
        let timestamp = Int64(Date().timeIntervalSince1970)

        /// entity, row_id, kind, data, before, ts (see `SQLDialect.appendChangeSQL`); `before`
        /// as only the fields the write changed where it can be (`ChangeLogBefore`).
        var parameters: [SQLValue] {
            [.text(entity), .text(rowID), .text(kind.rawValue),
             data.map { .text(JSONWriter.string($0)) } ?? .null,
             ChangeLogBefore.stored(before, data: data).map { .text($0) } ?? .null,
             .int(timestamp)]
        }

        func event(_ seq: Int64) -> ChangeEvent {
            ChangeEvent(seq: seq, entity: entity, rowID: rowID, kind: kind, data: data, before: before, timestamp: timestamp)
        }
    }

    /// Oldest and newest retained seq (0, 0 when empty).
    public func bounds() async throws -> (oldest: Int64, newest: Int64) {
        try await store.read { conn in
            let r = try conn.execute("SELECT MIN(seq), MAX(seq) FROM _pylon_changes")
            guard let row = r.rows.first else { return (0, 0) }
            if case let .int(lo) = row.at(0), case let .int(hi) = row.at(1) { return (lo, hi) }
            return (0, 0)
        }
    }

    public struct Page: Sendable {
        /// Pre-serialized events (data is spliced from storage without re-parsing).
        public var events: [StoredEvent]
        public var lastSeq: Int64
        public var hasMore: Bool
    }

    /// An event as read back from the log.
    public struct StoredEvent: Sendable {
        public var seq: Int64
        public var entity: String
        public var rowID: String
        public var kind: String
        public var dataJSON: String?
        /// `before` as stored: whole, or only the fields the write changed (`ChangeLogBefore`).
        public var beforeJSON: String?
        public var timestamp: Int64
    }

    /// Events after `since`, at most `limit` (below 1 reads 1: an empty page that says
    /// `hasMore` would have a client that follows `hasMore` ask again forever), and no more
    /// after their rows passed `pageBytes` (`hasMore` then says so). Throws
    /// RESYNC_REQUIRED (410) for a cursor that is ahead of the log, older than the retained
    /// window, or from another epoch.
    public func pull(since: Int64, limit requested: Int, epoch clientEpoch: String?) async throws -> Page {
        let limit = max(requested, 1)
        let (oldest, newest) = try await bounds()
        if let clientEpoch, !clientEpoch.isEmpty, clientEpoch != epoch {
            throw resync("cursor belongs to database epoch \(clientEpoch), this database is \(epoch); client must re-sync", oldest: max(oldest, 1))
        }
        if since > newest {
            throw resync("cursor last_seq=\(since) is ahead of this database's newest seq=\(newest) (another database, or a restored backup); client must re-sync", oldest: newest + 1)
        }
        if since > 0, oldest > 0, since + 1 < oldest {
            throw resync("cursor last_seq=\(since) is older than the oldest retained seq=\(oldest); client must re-sync", oldest: oldest)
        }
        // The rows' sizes first, without their values: the page ends where they pass
        // `pageBytes` (at least one event), and only those rows are read whole.
        let d = dialect
        let sizesSQL = "SELECT seq, COALESCE(\(d.textSize("data")), 0) + COALESCE(\(d.textSize("before")), 0) FROM _pylon_changes WHERE seq > \(d.placeholder(1)) ORDER BY seq LIMIT \(d.placeholder(2))"
        let rowsSQL = "SELECT seq, entity, row_id, kind, data, before, ts FROM _pylon_changes WHERE seq > \(d.placeholder(1)) AND seq <= \(d.placeholder(2)) ORDER BY seq"
        let (rows, last, hasMore) = try await store.read { conn -> ([[SQLValue]], Int64, Bool) in
            let sizes = try conn.execute(sizesSQL, [.int(since), .int(Int64(limit) + 1)]).rows
            var last = since, taken = 0, bytes: Int64 = 0
            for size in sizes.prefix(limit) {
                guard case let .int(seq) = size.at(0) else { continue }
                let n: Int64 = if case let .int(n) = size.at(1) { n } else { 0 }
                if taken > 0, bytes + n > Int64(Self.pageBytes) { break }
                bytes += n
                taken += 1
                last = seq
            }
            guard taken > 0 else { return ([], since, false) }
            return (try conn.execute(rowsSQL, [.int(since), .int(last)]).rows, last, sizes.count > taken)
        }
        var events: [StoredEvent] = []
        events.reserveCapacity(rows.count)
        for row in rows {
            guard case let .int(seq) = row.at(0), case let .text(entity) = row.at(1), case let .text(rowID) = row.at(2),
                  case let .text(kind) = row.at(3), case let .int(ts) = row.at(6) else { continue }
            var data: String?
            if case let .text(d) = row.at(4) { data = d }
            var before: String?
            if case let .text(b) = row.at(5) { before = b }
            events.append(StoredEvent(seq: seq, entity: entity, rowID: rowID, kind: kind, dataJSON: data,
                                      beforeJSON: before, timestamp: ts))
        }
        return Page(events: events, lastSeq: last, hasMore: hasMore)
    }

    /// The most bytes of logged rows (`data` and `before`) a page holds past its first
    /// event: a page of 1,000 events of 10 MiB rows, read by anyone who may pull (the rows
    /// are filtered after reading), held 20 GB.
    public static let pageBytes = 4 << 20

    func resync(_ message: String, oldest: Int64) -> HostError {
        HostError(status: 410, code: "RESYNC_REQUIRED", message: message,
                  extra: [("oldest_seq", .int(oldest)), ("epoch", .string(epoch))])
    }

    /// Deletes entries beyond the retention window, never the newest one.
    public func trim() async throws -> Int64 {
        let keep = retention
        return try await store.write { tx in
            let r = try tx.connection.execute("SELECT MAX(seq) FROM _pylon_changes")
            guard case let .int(newest)? = r.rows.first?.first else { return 0 }
            let cutoff = newest - keep
            guard cutoff > 0 else { return 0 }
            let res = try tx.connection.execute(
                "DELETE FROM _pylon_changes WHERE seq <= \(tx.dialect.placeholder(1))", [.int(cutoff)], wantRows: false)
            return res.rowsAffected
        }
    }
}

extension ChangeLog.StoredEvent {
    /// The wire JSON of this event as a reader allowed by `canRead` sees it (see
    /// `Visibility`), or nil when it must not see it at all.
    package func visibleJSON(_ canRead: (JSONValue?) -> Bool) -> String? {
        let data = dataJSON.flatMap { try? JSONParser.parse($0) }
        let before = ChangeLogBefore.read(beforeJSON, data: data)
        var w = JSONWriter()
        switch Visibility.of(kind: ChangeKind(rawValue: kind) ?? .update, data: data, before: before, canRead) {
        case .hidden: return nil
        case .full: write(to: &w)
        case .asDelete:
            var gone = self
            gone.kind = ChangeKind.delete.rawValue
            gone.dataJSON = nil
            gone.write(to: &w)
        }
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// Appends the wire JSON of this event.
    func write(to w: inout JSONWriter) {
        w.raw("{\"seq\":\(seq),\"entity\":")
        w.writeString(entity)
        w.raw(",\"row_id\":")
        w.writeString(rowID)
        w.raw(",\"kind\":")
        w.writeString(kind)
        if let dataJSON {
            w.raw(",\"data\":")
            w.raw(dataJSON)
        }
        w.raw(",\"timestamp\":\"\(timestamp)Z\"}")
    }
}
