import Foundation
import Logging
import PylonCore
import PylonData

/// Deletes stored bytes that no file row names: bytes a crash left between the plugin's
/// commit and the row's insert, or between a row's delete and the bytes' removal (or whose
/// removal failed). Pages through the plugin's keys (`FilesService.list`, ABI 2.7) and
/// asks the store which of them rows name; a key no row names is deleted only when its
/// bytes are older than the grace period, so an upload whose row is being written (its
/// bytes committed a moment ago) is never touched, nor one still being written (the
/// plugin never lists those). Runs every `PYLON_FILES_SWEEP_SECS` and on
/// `POST /api/files/sweep`; one sweep at a time per host (several hosts sharing one files
/// folder may sweep together: a removal of bytes already gone is not an error).
package final class FileSweeper: @unchecked Sendable {
    let service: FilesService
    let records: FileRecords
    let graceMs: Int64
    let logger: Logger
    private let lock = NSLock()
    private var running = false
    static let pageSize = 500

    package init(service: FilesService, records: FileRecords, graceSecs: Int, logger: Logger) {
        self.service = service
        self.records = records
        graceMs = Int64(graceSecs) * 1000
        self.logger = logger
    }

    /// What one sweep did.
    package struct Report: Sendable {
        package var listed = 0
        package var removed = 0
        package var bytesRemoved: Int64 = 0
    }

    /// One sweep over every stored key; 409 SWEEP_RUNNING when one is under way on this host.
    package func sweep() async throws -> Report {
        let started = lock.withLock { () -> Bool in
            if running { return false }
            running = true
            return true
        }
        guard started else { throw HostError(status: 409, code: "SWEEP_RUNNING", message: "a files sweep is already running on this host; try again when it ends") }
        defer { lock.withLock { running = false } }
        var report = Report()
        var after: String?
        let cutoff = Int64(Date().timeIntervalSince1970 * 1000) - graceMs
        while true {
            let page = try await service.list(after: after, limit: Self.pageSize)
            report.listed += page.files.count
            let old = page.files.filter { $0.modifiedMs < cutoff }
            let named = try await records.namedKeys(old.map(\.key))
            for f in old where !named.contains(f.key) {
                try await service.remove(f.key)
                report.removed += 1
                report.bytesRemoved += f.size
            }
            // A plugin that says "more" but lists nothing, or does not move past `after`,
            // would loop forever: stop there.
            guard page.more, let last = page.files.last?.key, last != after else { break }
            after = last
        }
        if report.removed > 0 {
            logger.info("files: the sweep removed \(report.removed) orphaned file(s), \(report.bytesRemoved) bytes, that no file row named")
        }
        return report
    }

    /// Sweeps every `interval` until cancelled.
    package func run(every interval: Int) async {
        while true {
            do { try await Task.sleep(for: .seconds(interval)) } catch { return }
            do { _ = try await sweep() } catch {
                logger.warning("files: the orphan sweep failed: \(error)")
            }
        }
    }
}
