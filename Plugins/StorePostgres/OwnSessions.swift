import Foundation

/// The server process ids of one plugin instance's live sessions (`wait_notify` leaves
/// out what they sent). Threads: any; its own lock.
final class OwnSessions: @unchecked Sendable {
    private let lock = NSLock()
    private var pids: Set<Int32> = []

    func insert(_ pid: Int32) {
        guard pid != 0 else { return }
        lock.withLock { _ = pids.insert(pid) }
    }

    func remove(_ pid: Int32) {
        lock.withLock { _ = pids.remove(pid) }
    }

    func contains(_ pid: Int32) -> Bool { lock.withLock { pids.contains(pid) } }
}
