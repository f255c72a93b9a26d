import Foundation
import Logging
import PylonCore

/// Makes sessions end everywhere at once (DESIGN.md §4): a session revoked, expired or
/// changed — by a route on this host or another host on the same database, or by SQL
/// typed by hand — stops being honoured by HTTP requests and ends every WebSocket and SSE
/// stream it authenticated within about `pollInterval`.
///
/// How: database triggers on `_pylon_sessions` (AFTER UPDATE, AFTER DELETE; see the
/// dialects' `bootstrap`) append the old token hash to `_pylon_session_changes`, so no
/// code path can change a session without leaving a trace. Every host reads that log a few
/// times a second (`seq > last`, one indexed read; no read per request), drops the named
/// sessions from its cache (the next request reads the row again) and re-reads the rows of
/// those that hold streams here: a stream whose session is gone or expired is ended; one
/// whose expiry moved keeps going with the new expiry. A revocation made on this host also
/// ends its streams directly (`SessionStore.onRevoked`), without waiting for a poll.
/// Expiry by time needs no database change: each poll ends the streams whose `expires_at`
/// passed (`ChangeHub.endExpired`), and the cache checks `expires_at` on every hit.
///
/// Numbers and gaps: an entry's `seq` is taken when its transaction writes it, so on
/// PostgreSQL a later number may commit first (two transactions at once, or a rollback
/// that never commits). A number skipped over is remembered for `gapPatience` and asked for
/// again on every poll until it appears. When the watcher cannot keep track (the database
/// was unreachable, or too many numbers are missing) it starts over: it forgets every
/// cached session and re-reads the session of every open stream.
///
/// The log keeps `retentionSeconds` of entries; every host trims it now and then.
package final class SessionWatcher: @unchecked Sendable {
    private let store: StoreThreads
    private let dialect: SQLDialect
    private let sessions: SessionStore
    private let hub: ChangeHub
    private let logger: Logger

    /// PYLON_SESSION_POLL_MS (default 200 ms).
    private let pollInterval: Duration
    /// How long a skipped number is waited for.
    static let gapPatience: Int64 = 600
    /// More missing numbers than this: start over instead of tracking each.
    static let maxGaps = 500
    static let batch = 1000
    static let retentionSeconds: Int64 = 3600
    /// Seconds between trims of the log.
    static let trimSeconds = 60

    // Touched only by `run`'s task.
    /// The newest entry seen; nil while the log was empty at start (every entry is new).
    private var last: Int64?
    /// Numbers skipped over, with when they were first missed.
    private var gaps: [Int64: Int64] = [:]
    private var lostTrack = false

    package init(store: StoreThreads, dialect: SQLDialect, sessions: SessionStore, hub: ChangeHub, pollInterval: Duration, logger: Logger) {
        self.pollInterval = pollInterval
        self.store = store
        self.dialect = dialect
        self.sessions = sessions
        self.hub = hub
        self.logger = logger
    }

    /// Polls until cancelled.
    package func run() async {
        do {
            last = try await store.read { conn in
                if case let .int(n)? = try conn.execute("SELECT MAX(seq) FROM _pylon_session_changes").rows.first?.first { return n }
                return nil
            }
        } catch {
            logger.warning("sessions: cannot read the session change log (\(error)); retrying")
            lostTrack = true
        }
        var trimmed = SessionStore.now()
        while !Task.isCancelled {
            do { try await Task.sleep(for: pollInterval) } catch { return }  // cancelled: the host is stopping
            hub.endExpired(now: SessionStore.now())
            await poll()
            if SessionStore.now() - trimmed >= Self.trimSeconds {
                trimmed = SessionStore.now()
                await trim()
            }
        }
    }

    private func poll() async {
        let now = SessionStore.now()
        let changed: [String]
        do {
            changed = try await readChanges(now: now)
        } catch {
            if !lostTrack { logger.warning("sessions: cannot read the session change log (\(error)); retrying") }
            lostTrack = true
            return
        }
        do {
            if lostTrack {
                lostTrack = false
                logger.info("sessions: re-checking every cached session and session stream")
                sessions.forgetAll()
                try await recheck(hub.streamingSessions())
            } else if !changed.isEmpty {
                sessions.forget(changed)
                try await recheck(hub.streamingSessions(among: changed))
            }
        } catch {
            logger.warning("sessions: cannot re-read changed sessions (\(error)); retrying")
            lostTrack = true
        }
    }

    /// The token hashes of the entries that appeared since the last poll.
    private func readChanges(now: Int64) async throws -> [String] {
        let d = dialect
        let from = last ?? 0
        let missing = Array(gaps.keys)
        let rows: [[SQLValue]] = try await store.read { conn in
            var rows = try conn.execute(
                "SELECT seq, token_hash FROM _pylon_session_changes WHERE seq > \(d.placeholder(1)) ORDER BY seq\(d.limitOffset(limit: d.placeholder(2), offset: nil))",
                [.int(from), .int(Int64(Self.batch))]).rows
            if !missing.isEmpty {
                let list = (1...missing.count).map { d.placeholder($0) }.joined(separator: ", ")
                rows += try conn.execute("SELECT seq, token_hash FROM _pylon_session_changes WHERE seq IN (\(list))",
                                         missing.map { SQLValue.int($0) }).rows
            }
            return rows
        }
        var hashes: [String] = []
        for row in rows {
            guard case let .int(seq) = row.at(0), case let .text(hash) = row.at(1) else { continue }
            if seq <= from {
                // A number that was missing arrived.
                if gaps.removeValue(forKey: seq) != nil { hashes.append(hash) }
                continue
            }
            if let known = last, seq > known + 1 { skipped(known + 1, seq, now: now) }
            last = max(last ?? seq, seq)
            hashes.append(hash)
        }
        gaps = gaps.filter { now - $0.value < Self.gapPatience }
        return hashes
    }

    /// Numbers `from..<to` were passed over: remember them, or start over if too many.
    private func skipped(_ from: Int64, _ to: Int64, now: Int64) {
        guard to - from + Int64(gaps.count) <= Int64(Self.maxGaps) else {
            gaps.removeAll()
            lostTrack = true
            return
        }
        for n in from..<to { gaps[n] = now }
    }

    /// Re-reads these sessions (each holds streams here): ends the streams of those gone
    /// or expired, moves the expiry of the others (and ends their streams opened in an
    /// organisation the session no longer acts in, or with another verified address).
    private func recheck(_ hashes: [String]) async throws {
        guard !hashes.isEmpty else { return }
        let states = try await sessions.streamStates(hashes)
        let now = SessionStore.now()
        var ended: [String] = []
        for h in hashes {
            if let state = states[h], state.expiresAt == 0 || now < state.expiresAt {
                hub.updateSession(h, expiresAt: state.expiresAt, tenantID: state.tenantID, email: state.email)
            } else {
                ended.append(h)
            }
        }
        hub.endSessions(ended)
    }

    private func trim() async {
        let cutoff = SessionStore.now() - Self.retentionSeconds
        let sql = "DELETE FROM _pylon_session_changes WHERE ts < \(dialect.placeholder(1))"
        do {
            try await store.write { tx in _ = try tx.connection.execute(sql, [.int(cutoff)], wantRows: false) }
        } catch {
            logger.warning("sessions: cannot trim the session change log (\(error))")
        }
    }
}
