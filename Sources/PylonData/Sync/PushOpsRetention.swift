import Foundation
import PylonCore

/// Deletes push records (`_pylon_push_ops`) older than the retention window, so the table
/// holds a window of pushes instead of every op ever pushed, as sync backends keep
/// mutation ids for a bounded time.
///
/// Each batch is its own short write transaction that finds its rows through
/// `_pylon_push_ops_created`, so a write waits behind one batch at most, never behind the
/// whole sweep. The trade-off: an `op_id` resent after the window (by a client offline
/// that long) is applied again, and a `_pending_` id named after it no longer resolves.
package struct PushOpsRetention: Sendable {
    let store: StoreThreads
    /// Records older than this many seconds are deleted; 0 keeps them all.
    let retentionSecs: Int64

    /// Records one transaction deletes: small enough that a writer queued behind it waits
    /// milliseconds.
    static let batch = 500

    package init(store: StoreThreads, retentionHours: Int) {
        self.store = store
        retentionSecs = Int64(retentionHours) * 3600
    }

    /// Deletes the records created before `now` − retention, batch by batch; returns how
    /// many. Stops early (keeping the rest for the next sweep) when its task is cancelled.
    package func sweep(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws -> Int64 {
        guard retentionSecs > 0 else { return 0 }
        let cutoff = now - retentionSecs
        var total: Int64 = 0
        while !Task.isCancelled {
            let deleted = try await store.write { tx in
                let due = "SELECT scope, op_id FROM _pylon_push_ops WHERE created_at < \(tx.dialect.placeholder(1)) LIMIT \(Self.batch)"
                // Counted first: a store that applies writes at COMMIT (D1) reports none affected.
                let found = try tx.connection.execute("SELECT COUNT(*) FROM (\(due)) AS due", [.int(cutoff)]).rows.first?.first
                guard case let .int(n)? = found, n > 0 else { return Int64(0) }
                try tx.write("DELETE FROM _pylon_push_ops WHERE (scope, op_id) IN (\(due))", [.int(cutoff)])
                return n
            }
            total += deleted
            if deleted < Self.batch { break }
            // Let the writes queued meanwhile go first.
            await Task.yield()
        }
        return total
    }
}
