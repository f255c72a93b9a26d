/// The disconnect notices the hub sends every WebSocket client
/// (`{"type":"presence","event":"disconnect","clientId":N}`, pylon-core.md "Server → client text frames"), kept once
/// for all connections instead of once per connection: a connection's queue holds only the
/// range of notices it has still to send (`HubMessage.leaves`), which grows in place while
/// nothing else is queued behind it. When N clients leave at once, each of the others would
/// otherwise queue up to N notices of its own (N² in all: 924,000 were queued at once when
/// 10,000 subscribers closed together, bench/RESULTS.md session 11), and the hub would make
/// a pass over every subscriber per leaver instead of per fan-out tick.
///
/// A ring of the newest `capacity` notices, numbered from 1. A connection that falls further
/// behind than that misses the oldest of its range (notices are not durable, like every relay).
/// Not thread-safe: the hub guards it with its lock.
struct LeaveLog {
    /// More than the connections one host holds (its open-file limit), so every notice of a
    /// mass disconnect fits; each is a ~60-byte string, so a full ring costs about 5 MB.
    static let capacity = 65_536

    private var ring: [String] = []
    /// The number of the newest notice (0: none yet). Notice `n` sits at `ring[(n - 1) % capacity]`.
    private(set) var newest: Int64 = 0

    /// Keeps a notice; returns its number.
    mutating func append(_ frame: String) -> Int64 {
        newest += 1
        if ring.count < Self.capacity {
            ring.append(frame)
        } else {
            ring[Int((newest - 1) % Int64(Self.capacity))] = frame
        }
        return newest
    }

    /// The notices of `range` still kept, oldest first (those already overwritten are skipped).
    func frames(_ range: ClosedRange<Int64>) -> [String] {
        let oldest = newest - Int64(ring.count) + 1
        let from = max(range.lowerBound, oldest)
        let through = min(range.upperBound, newest)
        guard from <= through else { return [] }
        return (from...through).map { ring[Int(($0 - 1) % Int64(Self.capacity))] }
    }
}

/// A delivery of leave notices queued on the hub's fan-out queue. It takes later notices
/// (`through` moves) until it runs or until anything else is queued behind it, so a burst of
/// disconnects costs one pass over the subscribers per fan-out tick, not one per leaver, and
/// no notice overtakes a relay or change queued before it. Guarded by the hub's lock.
final class LeaveFlush: @unchecked Sendable {
    let from: Int64
    var through: Int64

    init(_ seq: Int64) {
        from = seq
        through = seq
    }
}
