import Atomics
import Foundation
import PylonPluginABI

/// The read connections `StoreThreads.read(quick: true)` uses inline on the calling thread, an event
/// loop (a store with PYLON_STORE_FLAG_LOCAL_READS, opened PYLON_STORE_OPEN_READ_BOUNDED:
/// their reads are [bounded], they never wait for a lock; none for other stores). Taken
/// and given back without a lock:
/// each connection has its own busy flag, claimed by compare-and-swap, and each thread
/// starts looking at a different connection, so the event loops do not wait for each other
/// (a pool behind one lock was taken twice per point read by every loop).
final class QuickReaders: Sendable {
    private final class Slot: Sendable {
        let conn: StoreConnection
        let busy = ManagedAtomic<Bool>(false)
        init(_ conn: StoreConnection) { self.conn = conn }
    }

    private let slots: [Slot]
    private let closed = ManagedAtomic<Bool>(false)

    init(_ connections: [StoreConnection]) {
        slots = connections.map(Slot.init)
    }

    /// `body` on a free connection; nil when there is none free (or none at all, or the
    /// store is shutting down), or when the store answered BUSY: a quick connection does
    /// not wait for a lock another connection holds, a reader thread does (the caller's
    /// fallback), so the read still succeeds.
    func with<T>(_ body: (StoreConnection) throws -> T) throws -> T? {
        guard !slots.isEmpty else { return nil }
        let start = Self.threadHint % slots.count
        for k in 0..<slots.count {
            let slot = slots[(start + k) % slots.count]
            guard slot.busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged else { continue }
            defer { slot.busy.store(false, ordering: .releasing) }
            // Checked after claiming: `shutdown` sets `closed` before claiming each slot to
            // close it, so one of the two sees the other (both sequentially consistent).
            if closed.load(ordering: .sequentiallyConsistent) { return nil }
            do {
                return try body(slot.conn)
            } catch let e as StoreError where e.status == PYLON_ERR_BUSY {
                return nil
            }
        }
        return nil
    }

    /// Closes every connection not in use, and keeps it claimed so nobody takes it again.
    /// One in use at this moment is closed by nobody: the process is ending.
    func shutdown() {
        closed.store(true, ordering: .sequentiallyConsistent)
        for slot in slots where slot.busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged {
            slot.conn.close()
        }
    }

    /// A number that differs between threads, stable on one: where a thread starts looking.
    private static var threadHint: Int {
        #if os(Linux)
        let id = UInt(pthread_self())
        #else
        let id = UInt(bitPattern: pthread_self())
        #endif
        // Thread descriptors lie far apart at aligned addresses: mix the higher bits down.
        return Int(truncatingIfNeeded: (id >> 12) ^ (id >> 21) ^ (id >> 30)) & Int.max
    }
}
