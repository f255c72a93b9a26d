import Foundation
import Logging
import PylonCore
import PylonJSON

/// Feeds the realtime hub from the durable change log itself, for stores that several
/// hosts write at once (a store with PYLON_STORE_FLAG_CONCURRENT_WRITERS, e.g. Postgres):
/// a write on host A reaches WebSocket/SSE subscribers on host B because B's tailer reads
/// A's entries from the shared `_pylon_changes`.
///
/// Order and completeness: the dialect's write lock makes entries commit in `seq` order
/// (see `PostgresDialect`), so reading `seq > last ORDER BY seq` can never skip an entry
/// that commits later. Every host's hub, local writes included, is fed only through here,
/// in seq order without gaps, so all subscribers see one order. This host's own commits
/// are handed over by `offer` and published without reading them back when they continue
/// the published sequence (no other host committed in between); otherwise the tailer reads
/// the log.
///
/// Wake-ups: when the store can wait for database signals (`wait_notify`: Postgres
/// LISTEN/NOTIFY), every host's write transaction signals the dialect's `notifyChannel` at commit and the
/// tailer blocks on it, polling only as a safety net every `notifyFallback`. A store may
/// leave out the signals of this host's own commits (Postgres does), which `offer`
/// publishes; what `offer` cannot publish wakes the tailer itself (`wake`). Otherwise, or
/// while waiting fails, it polls every `pollInterval` (PYLON_CHANGE_POLL_MS), and a local
/// commit wakes it at once.
///
/// Threads: one dedicated thread owning one read connection; `wake` and `stop` from any
/// thread. A failing read (database restarting) is logged and retried with backoff; the
/// tailer resumes from the last delivered seq, so nothing is lost or repeated.
package final class ChangeTailer: @unchecked Sendable {
    private let connection: StoreConnection
    private let dialect: SQLDialect
    private let publish: @Sendable ([ChangeEvent]) -> Void
    private let logger: Logger
    private let pollInterval: TimeInterval
    private let condition = NSCondition()
    private var woken = false
    private var stopped = false
    private var thread: Thread?
    /// Highest seq handed to the hub. Read and advanced under `feed` (the tailer thread and
    /// `offer` both publish), which also keeps publications in order.
    private var last: Int64
    private let feed = NSLock()

    /// Called on the tailer's thread after each read of the log (the host counts them):
    /// set before `start`.
    package var onRead: (@Sendable () -> Void)?

    /// Entries read per query.
    static let batch = 1000
    /// With signals, the longest wait before reading the log anyway.
    static let notifyFallback: Int32 = 1000

    package init(connection: StoreConnection, dialect: SQLDialect, from seq: Int64, pollInterval: TimeInterval,
         logger: Logger, publish: @escaping @Sendable ([ChangeEvent]) -> Void) {
        self.connection = connection
        self.dialect = dialect
        self.last = seq
        self.pollInterval = pollInterval
        self.logger = logger
        self.publish = publish
    }

    package func start() {
        let t = Thread { [self] in loop() }
        t.name = "pylon-change-tailer"
        thread = t
        t.start()
    }

    /// This host committed `events` (in seq order). They are published at once when they
    /// directly follow what was published; otherwise the tailer reads the log now.
    package func offer(_ events: [ChangeEvent]) {
        guard let first = events.first, let end = events.last?.seq else { return }
        let published: Bool = feed.withLock {
            guard first.seq == last + 1 else { return false }
            last = end
            publish(events)
            return true
        }
        if !published { wake() }
    }

    /// Read the log now instead of at the next poll (also when this host committed entries
    /// it could not `offer`).
    package func wake() {
        condition.lock()
        woken = true
        condition.signal()
        condition.unlock()
    }

    /// Ends the loop; the thread closes its connection. Returns at once.
    package func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        var failures = 0
        // The dialect names the channel its commits signal (`notifyChannel`).
        let channel = dialect.notifyChannel ?? ""
        var useSignals = connection.canWaitForNotify && !channel.isEmpty
        if useSignals { logger.info("change tailer: woken by database signals (\(channel)), polling every \(Self.notifyFallback) ms as a fallback") }
        while true {
            if useSignals && failures == 0 && !isStopped {
                do {
                    _ = try connection.waitForNotify(channel, timeoutMs: Self.notifyFallback)
                } catch {
                    // Poll instead, and try signals again once reading works.
                    logger.warning("change tailer: waiting for database signals failed (\(error)); polling")
                    useSignals = false
                }
            }
            condition.lock()
            if !woken && !stopped && !(useSignals && failures == 0) {
                let backoff = failures == 0 ? pollInterval : min(2.0, pollInterval * Double(1 << min(failures, 6)))
                _ = condition.wait(until: Date().addingTimeInterval(backoff))
            }
            woken = false
            let done = stopped
            condition.unlock()
            if done { break }
            do {
                while try readOnce() {}
                if failures > 0 { logger.info("change tailer: reading the change log again (from seq \(last))") }
                failures = 0
                if !useSignals && connection.canWaitForNotify && !channel.isEmpty { useSignals = true }
            } catch {
                if failures == 0 { logger.warning("change tailer: cannot read the change log (\(error)); retrying") }
                failures += 1
            }
        }
        connection.close()
    }

    private var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Reads and publishes the next entries; true when there may be more.
    private func readOnce() throws -> Bool {
        let sql = "SELECT seq, entity, row_id, kind, data, before, ts FROM _pylon_changes WHERE seq > \(dialect.placeholder(1)) ORDER BY seq LIMIT \(dialect.placeholder(2))"
        let from = feed.withLock { last }
        let rows = try connection.execute(sql, [.int(from), .int(Int64(Self.batch))]).rows
        onRead?()
        var events: [ChangeEvent] = []
        events.reserveCapacity(rows.count)
        var newest = from
        var unreadable = 0
        for row in rows {
            // Past every row read, even one that cannot be decoded, so a bad row is skipped once.
            if case let .int(seq) = row.first { newest = max(newest, seq) }
            guard case let .int(seq) = row[0], case let .text(entity) = row[1], case let .text(rowID) = row[2],
                  case let .text(kindText) = row[3], case let .int(ts) = row[6] else {
                unreadable += 1
                continue
            }
            func json(_ v: SQLValue) -> JSONValue? {
                if case let .text(s) = v { return try? JSONParser.parse(s) }
                return nil
            }
            let data = json(row[4])
            var before: JSONValue?
            if case let .text(stored) = row[5] { before = ChangeLogBefore.read(stored, data: data) }
            events.append(ChangeEvent(seq: seq, entity: entity, rowID: rowID, kind: ChangeKind(rawValue: kindText) ?? .update,
                                      data: data, before: before, timestamp: ts))
        }
        if unreadable > 0 { logger.warning("change tailer: skipped \(unreadable) change-log row(s) that could not be read") }
        feed.withLock {
            // `offer` may have published some or all of these meanwhile; the rest continue it.
            guard newest > last else { return }
            let fresh = events.drop { $0.seq <= last }
            last = newest
            if !fresh.isEmpty { publish(Array(fresh)) }
        }
        return rows.count == Self.batch
    }
}
