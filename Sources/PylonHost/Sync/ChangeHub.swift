import Foundation

/// A committed change as the hub fans it out: the wire JSON is built once per event and
/// shared by every subscriber (Strings are copy-on-write), whatever their number.
public struct HubEvent: Sendable {
    public let seq: Int64
    public let entity: String
    public let kind: ChangeKind
    /// The bare change event JSON (pylon-core.md §3.1, live form: `"timestamp": ""` is
    /// replaced by the commit time, which clients ignore).
    public let payload: String
    /// The full row the read policy judges: the row after an insert/update, the last row
    /// before a delete.
    public let row: JSONValue?
}

/// What a subscriber's sender takes from its queue.
public enum HubMessage: Sendable {
    case change(HubEvent)
    /// Presence/topic relays and other frames that are not change events (WS only).
    case relay(String)
}

/// One WS or SSE connection's view of the hub. Its queue is bounded: when a consumer
/// falls behind by more than `limit` messages the subscriber is marked overflowed and
/// stops queueing; its sender then tells the client to resync and closes. A subscriber
/// never silently skips an event and never holds more than `limit` messages.
///
/// Threads: `offer` is called by the store's writer thread (via the hub), `drain` by the
/// connection's sender task; a lock guards the queue.
public final class Subscriber: @unchecked Sendable {
    public let id: UInt64
    public let auth: AuthContext
    public let address: String
    public let wantsRelays: Bool
    let limit: Int
    private let lock = NSLock()
    private var queue: [HubMessage] = []
    private var live = false
    private var newestWhileCatchingUp: Int64 = 0
    private var overflowedFlag = false
    private var closedFlag = false
    private let wakeContinuation: AsyncStream<Void>.Continuation
    /// Yields whenever there is something to drain (coalesced).
    public let wakes: AsyncStream<Void>
    /// Called (once) when the subscriber overflows, so a sender stuck writing to a dead
    /// socket can be closed from outside.
    var onOverflow: (@Sendable () -> Void)?

    init(id: UInt64, auth: AuthContext, address: String, wantsRelays: Bool, limit: Int) {
        self.id = id
        self.auth = auth
        self.address = address
        self.wantsRelays = wantsRelays
        self.limit = limit
        (wakes, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues a message, or notes the newest seq while the sender is still reading the log.
    func offer(_ message: HubMessage) {
        var overflowNow = false
        lock.withLock {
            guard !closedFlag, !overflowedFlag else { return }
            if !live {
                if case let .change(e) = message { newestWhileCatchingUp = max(newestWhileCatchingUp, e.seq) }
                return
            }
            if queue.count >= limit {
                overflowedFlag = true
                queue.removeAll()
                overflowNow = true
            } else {
                queue.append(message)
            }
        }
        if overflowNow { onOverflow?() }
        wakeContinuation.yield()
    }

    /// Records that `seq` was published without queueing it (the caller may not read it):
    /// a subscriber still catching up must read the log at least that far.
    func note(_ seq: Int64) {
        lock.withLock {
            if !live { newestWhileCatchingUp = max(newestWhileCatchingUp, seq) }
        }
    }

    /// Switches from log catch-up to live delivery; returns the newest seq published while
    /// catching up (the sender reads the log once more up to it; duplicates are dropped by seq).
    func goLive() -> Int64 {
        lock.withLock {
            live = true
            return newestWhileCatchingUp
        }
    }

    /// Takes everything queued. `overflowed` true means the client must resync.
    func drain() -> (messages: [HubMessage], overflowed: Bool) {
        lock.withLock {
            let out = queue
            queue.removeAll(keepingCapacity: true)
            return (out, overflowedFlag)
        }
    }

    /// Wakes the sender without a message (keepalives, shutdown).
    func poke() { wakeContinuation.yield() }

    func close() {
        lock.withLock { closedFlag = true }
        wakeContinuation.finish()
    }

    public var queued: Int { lock.withLock { queue.count } }
}

/// Fans committed changes out to every live WS/SSE connection, in seq order, on its own
/// serial queue (the writer thread only hands the batch over). Connections are grouped by
/// identity: the read policy is evaluated once per event per distinct caller, not once per
/// connection, and only connections that may read an event are queued and woken. Tracks
/// connections per client address so one address cannot hold more than `maxPerAddress`.
public final class ChangeHub: @unchecked Sendable {
    private let lock = NSLock()
    private var subscribers: [UInt64: Subscriber] = [:]
    private var groups: [AuthContext: [UInt64: Subscriber]] = [:]
    private var perAddress: [String: Int] = [:]
    private var nextID: UInt64 = 1
    public let queueLimit: Int
    public let maxPerAddress: Int
    let metrics: Metrics
    private let fanout = DispatchQueue(label: "pylon-fanout")
    /// Whether `auth` may read the row of an event; set by the host (policies).
    var canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool = { _, _, _ in true }

    init(queueLimit: Int, maxPerAddress: Int, metrics: Metrics) {
        self.queueLimit = queueLimit
        self.maxPerAddress = maxPerAddress
        self.metrics = metrics
    }

    /// Registers a connection, or refuses it when its address is at the limit.
    func subscribe(auth: AuthContext, address: String, wantsRelays: Bool) throws(HostError) -> Subscriber {
        lock.lock()
        defer { lock.unlock() }
        let n = perAddress[address, default: 0]
        if n >= maxPerAddress {
            throw HostError(status: 429, code: "TOO_MANY_CONNECTIONS",
                            message: "\(address) already holds \(n) realtime connections (limit \(maxPerAddress), PYLON_MAX_CONNECTIONS_PER_IP); close some first")
        }
        perAddress[address] = n + 1
        let s = Subscriber(id: nextID, auth: auth, address: address, wantsRelays: wantsRelays, limit: queueLimit)
        nextID += 1
        subscribers[s.id] = s
        groups[auth, default: [:]][s.id] = s
        metrics.set("realtime_connections", Double(subscribers.count))
        return s
    }

    func unsubscribe(_ s: Subscriber) {
        s.close()
        lock.withLock {
            if subscribers.removeValue(forKey: s.id) != nil {
                let n = (perAddress[s.address] ?? 1) - 1
                perAddress[s.address] = n > 0 ? n : nil
                groups[s.auth]?.removeValue(forKey: s.id)
                if groups[s.auth]?.isEmpty == true { groups.removeValue(forKey: s.auth) }
            }
            metrics.set("realtime_connections", Double(subscribers.count))
        }
    }

    /// Called by the writer after each commit with that commit's events in seq order.
    func publish(_ events: [ChangeEvent]) {
        fanout.async { [self] in deliver(events) }
    }

    private func deliver(_ events: [ChangeEvent]) {
        let snapshot: [(AuthContext, [Subscriber])] = lock.withLock {
            groups.map { ($0.key, Array($0.value.values)) }
        }
        guard !snapshot.isEmpty else { return }
        var delivered = 0
        for e in events {
            let row = e.data ?? e.before
            let hub = HubEvent(seq: e.seq, entity: e.entity, kind: e.kind, payload: JSONWriter.string(e.json), row: row)
            for (auth, members) in snapshot {
                if canRead(auth, e.entity, row) {
                    for s in members { s.offer(.change(hub)) }
                    delivered += members.count
                } else {
                    // Still advance catching-up subscribers' notion of the newest seq.
                    for s in members { s.note(e.seq) }
                }
            }
        }
        metrics.add("realtime_deliveries_total", Int64(delivered))
    }

    /// Sends a presence/topic frame to every WS connection (on the fan-out queue, so it
    /// keeps its place relative to change events).
    func relay(_ text: String, except sender: UInt64?) {
        fanout.async { [self] in
            let subs = lock.withLock { Array(subscribers.values) }
            for s in subs where s.wantsRelays && s.id != sender { s.offer(.relay(text)) }
        }
    }

    public var connectionCount: Int { lock.withLock { subscribers.count } }
}
