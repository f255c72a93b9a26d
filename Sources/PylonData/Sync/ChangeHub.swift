import Foundation
import PylonCore
import PylonJSON

/// Fans committed changes out to every live WS/SSE connection, in seq order, on its own
/// serial queue (the writer thread only hands the batch over). Connections are grouped by
/// identity: the read policy is evaluated once per event per distinct caller, not once per
/// connection, and only connections that may read an event are queued and woken. Tracks
/// connections per client address so one address cannot hold more than `maxPerAddress`.
public final class ChangeHub: @unchecked Sendable {
    private let lock = NSLock()
    private var subscribers: [UInt64: Subscriber] = [:]
    private var groups: [AuthContext: [UInt64: Subscriber]] = [:]
    /// `groups` flattened for delivery; rebuilt only after (un)subscribes, not per commit.
    private var cachedGroups: [(AuthContext, [Subscriber])]?
    private var perAddress: [String: Int] = [:]
    /// Streams by the token hash of the session that authenticated them.
    private var bySession: [String: [UInt64: Subscriber]] = [:]
    /// Streams by the user they read as (room events go to the members' streams).
    private var byUser: [String: [UInt64: Subscriber]] = [:]
    /// Called, off the lock, when the last stream of a user closed (their rooms end).
    package var onUserGone: (@Sendable (String) -> Void)?
    /// The soonest expiry among session streams (0: none expires), so `endExpired`
    /// scans only when one is due.
    private var soonestExpiry: Int64 = 0
    private var nextID: UInt64 = 1
    /// The newest seq whose fan-out has begun (`deliver` took its snapshot of the
    /// subscribers): a stream registered now gets every event after it and none before.
    /// Starts at the log's newest entry (`startAfter`).
    private var fannedOutThrough: Int64 = 0
    /// Disconnect notices, kept once for every connection (see `LeaveLog`).
    private var leaves = LeaveLog()
    /// The leave delivery queued on `fanout` that still takes new notices (nil: none, or
    /// something was queued behind it since).
    private var openLeaveFlush: LeaveFlush?
    public let queueLimit: Int
    /// Each subscriber's queue bound in bytes (`Subscriber.byteLimit`).
    public let queueBytes: Int
    public let maxPerAddress: Int
    package let metrics: Metrics
    private let fanout = DispatchQueue(label: "pylon-fanout")
    /// Whether `auth` may read the row of an event; set by the host (policies).
    package var canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool = { _, _, _ in true }
    /// Shown every batch before its fan-out, on the publishing thread (before the writer
    /// answers the write); set by the host (`EmailChanges`).
    package var observe: (@Sendable ([ChangeEvent]) -> Void)?

    package init(queueLimit: Int, queueBytes: Int = .max, maxPerAddress: Int, metrics: Metrics) {
        self.queueLimit = queueLimit
        self.queueBytes = queueBytes
        self.maxPerAddress = maxPerAddress
        self.metrics = metrics
        let queued = metrics.collectedGauge("realtime_queued_messages")
        let deepest = metrics.collectedGauge("realtime_queue_depth_max")
        let heaviest = metrics.collectedGauge("realtime_queue_bytes_max")
        metrics.onCollect { [weak self] _ in
            guard let self else { return }
            let subs = lock.withLock { Array(subscribers.values) }
            let depths = subs.map(\.queued)
            queued.set(Double(depths.reduce(0, +)))
            deepest.set(Double(depths.max() ?? 0))
            heaviest.set(Double(subs.map(\.pendingBytes).max() ?? 0))
        }
    }

    /// The log's newest seq when the host starts serving: every later event reaches the hub,
    /// so streams opened before the first commit start after it.
    package func startAfter(_ seq: Int64) {
        lock.withLock { fannedOutThrough = max(fannedOutThrough, seq) }
    }

    /// Registers a connection, or refuses it when its address is at the limit. `live`: the
    /// connection has no cursor, so it is queued from now on (see `Subscriber.init`); with a
    /// cursor it reads the log first and goes live later (`SyncStream.run`). Either way the
    /// subscriber gets every event published after this call (its `start` says where that
    /// begins), so a transport must subscribe before the client can see the stream open.
    package func subscribe(auth: AuthContext, address: String, wantsRelays: Bool, session: StreamSession?,
                   live: Bool = false) throws(HostError) -> Subscriber {
        lock.lock()
        defer { lock.unlock() }
        let n = perAddress[address, default: 0]
        if n >= maxPerAddress {
            throw HostError(status: 429, code: "TOO_MANY_CONNECTIONS",
                            message: "\(address) already holds \(n) realtime connections (limit \(maxPerAddress), PYLON_MAX_CONNECTIONS_PER_IP); close some first")
        }
        perAddress[address] = n + 1
        let s = Subscriber(id: nextID, auth: auth, address: address, wantsRelays: wantsRelays, session: session, limit: queueLimit,
                           byteLimit: queueBytes, live: live, start: fannedOutThrough)
        nextID += 1
        subscribers[s.id] = s
        groups[auth, default: [:]][s.id] = s
        if let session {
            bySession[session.tokenHash, default: [:]][s.id] = s
            noteExpiry(session.expiresAt)
        }
        if let user = auth.userID { byUser[user, default: [:]][s.id] = s }
        cachedGroups = nil
        metrics.set("realtime_connections", Double(subscribers.count))
        return s
    }

    package func unsubscribe(_ s: Subscriber) {
        s.close()
        let gone: String? = lock.withLock {
            var gone: String?
            if subscribers.removeValue(forKey: s.id) != nil {
                let n = (perAddress[s.address] ?? 1) - 1
                perAddress[s.address] = n > 0 ? n : nil
                groups[s.auth]?.removeValue(forKey: s.id)
                if groups[s.auth]?.isEmpty == true { groups.removeValue(forKey: s.auth) }
                if let h = s.session?.tokenHash {
                    bySession[h]?.removeValue(forKey: s.id)
                    if bySession[h]?.isEmpty == true { bySession.removeValue(forKey: h) }
                }
                if let user = s.auth.userID {
                    byUser[user]?.removeValue(forKey: s.id)
                    if byUser[user]?.isEmpty == true {
                        byUser.removeValue(forKey: user)
                        gone = user
                    }
                }
                cachedGroups = nil
            }
            metrics.set("realtime_connections", Double(subscribers.count))
            return gone
        }
        if let gone { onUserGone?(gone) }
    }

    /// Called by the writer after each commit with that commit's events in seq order.
    package func publish(_ events: [ChangeEvent]) {
        let committed = DispatchTime.now().uptimeNanoseconds
        observe?(events)
        lock.withLock { openLeaveFlush = nil }
        fanout.async { [self] in deliver(events, committed: committed) }
    }

    /// `committed`: when the writer handed the events over (`realtime_fanout_duration_seconds`
    /// runs from there until they are in every reader's queue).
    private func deliver(_ events: [ChangeEvent], committed: UInt64) {
        let snapshot: [(AuthContext, [Subscriber])] = lock.withLock {
            // With the snapshot: a subscriber registered from here on starts after this batch.
            if let newest = events.last?.seq { fannedOutThrough = max(fannedOutThrough, newest) }
            if let cached = cachedGroups { return cached }
            let built = groups.map { ($0.key, Array($0.value.values)) }
            cachedGroups = built
            return built
        }
        guard !snapshot.isEmpty else { return }
        var delivered = 0
        for e in events {
            let full = HubEvent(seq: e.seq, entity: e.entity, kind: e.kind, payload: JSONWriter.string(e.json),
                                row: e.data ?? e.before)
            var asDelete: HubEvent?
            for (auth, members) in snapshot {
                let message: HubEvent?
                switch Visibility.of(kind: e.kind, data: e.data, before: e.before, { canRead(auth, e.entity, $0) }) {
                case .full: message = full
                case .asDelete:
                    if asDelete == nil {
                        var gone = e
                        gone.kind = .delete
                        gone.data = nil
                        asDelete = HubEvent(seq: e.seq, entity: e.entity, kind: .delete, payload: JSONWriter.string(gone.json),
                                            row: e.before)
                    }
                    message = asDelete
                case .hidden: message = nil
                }
                if let message {
                    for s in members { s.offer(.change(message)) }
                    delivered += members.count
                } else {
                    // Still advance catching-up subscribers' notion of the newest seq.
                    for s in members { s.note(e.seq) }
                }
            }
        }
        metrics.add("realtime_deliveries_total", Int64(delivered))
        Metrics.record(metrics.fanoutDuration, since: committed)
    }

    /// Sends a presence/topic frame to every WS connection (on the fan-out queue, so it
    /// keeps its place relative to change events).
    package func relay(_ text: String) {
        lock.withLock { openLeaveFlush = nil }
        fanout.async { [self] in
            let subs = lock.withLock { Array(subscribers.values) }
            for s in subs where s.wantsRelays { s.offer(.relay(text)) }
        }
    }

    /// Sends a frame to every stream (WS and SSE) of `users`, on the fan-out queue (room
    /// events: only the room's members get them).
    package func relay(_ text: String, toUsers users: [String]) {
        lock.withLock { openLeaveFlush = nil }
        fanout.async { [self] in
            let subs = lock.withLock { users.flatMap { byUser[$0].map { Array($0.values) } ?? [] } }
            for s in subs { s.offer(.relay(text)) }
        }
    }

    /// Tells every WS connection that connection `id` is gone (call after unsubscribing it).
    /// Notices of a burst of disconnects are delivered together: one pass over the
    /// subscribers per fan-out tick, one queue entry per connection (see `LeaveLog`).
    package func announceLeave(of id: UInt64) {
        let frame = JSONWriter.string(.object([("type", "presence"), ("event", "disconnect"), ("clientId", .int(Int64(id)))]))
        let flush: LeaveFlush? = lock.withLock {
            let seq = leaves.append(frame)
            if let open = openLeaveFlush {
                open.through = seq
                return nil
            }
            openLeaveFlush = LeaveFlush(seq)
            return openLeaveFlush
        }
        guard let flush else { return }
        fanout.async { [self] in
            let (range, subs) = lock.withLock {
                if openLeaveFlush === flush { openLeaveFlush = nil }
                return (flush.from...flush.through, Array(subscribers.values))
            }
            for s in subs where s.wantsRelays { s.offer(.leaves(range)) }
        }
    }

    /// The disconnect notices of `range` (a connection's `HubMessage.leaves`) still kept.
    package func leaveFrames(_ range: ClosedRange<Int64>) -> [String] {
        lock.withLock { leaves.frames(range) }
    }

    public var connectionCount: Int { lock.withLock { subscribers.count } }

    // MARK: Sessions (see `SessionWatcher`)

    /// Must hold `lock`.
    private func noteExpiry(_ e: Int64) {
        if e != 0 && (soonestExpiry == 0 || e < soonestExpiry) { soonestExpiry = e }
    }

    /// The token hashes, among `hashes`, that authenticate open streams.
    func streamingSessions(among hashes: some Sequence<String>) -> [String] {
        lock.withLock { hashes.filter { bySession[$0] != nil } }
    }

    /// Every token hash that authenticates an open stream.
    func streamingSessions() -> [String] {
        lock.withLock { Array(bySession.keys) }
    }

    /// Ends every stream these sessions authenticated.
    package func endSessions(_ hashes: some Sequence<String>) {
        endSessions(of: lock.withLock { hashes.flatMap { bySession[$0].map { Array($0.values) } ?? [] } })
    }

    /// A session row changed: its streams take the new expiry, and those opened in another
    /// organisation than the one it now acts in, or with another verified address than its
    /// user now has, end (they read as that organisation, with that `auth.email`).
    func updateSession(_ hash: String, expiresAt: Int64, tenantID: String?, email: String?) {
        let ending: [Subscriber] = lock.withLock {
            guard let members = bySession[hash] else { return [] }
            for s in members.values { s.session?.expiresAt = expiresAt }
            noteExpiry(expiresAt)
            return members.values.filter { sub in sub.session.map { $0.tenantID != tenantID || sub.auth.email != email } ?? false }
        }
        endSessions(of: ending)
    }

    /// `userID`'s verified address is now `email`: their streams that read with another
    /// `auth.email` end (a JWT's reads with none, and keeps going). Clients reconnect and
    /// read as the user is now.
    package func userEmailChanged(_ userID: String, to email: String?) {
        let ending: [Subscriber] = lock.withLock {
            (byUser[userID]?.values).map { subs in subs.filter { $0.auth.email != ($0.session?.isJWT == false ? email : nil) } } ?? []
        }
        endSessions(of: ending)
    }

    private func endSessions(of ending: [Subscriber]) {
        for s in ending { s.endSession() }
        if !ending.isEmpty { metrics.add("realtime_sessions_ended_total", Int64(ending.count)) }
    }

    /// Ends the streams whose session expired by `now`. Cheap when none is due.
    func endExpired(now: Int64) {
        let due: [Subscriber] = lock.withLock {
            guard soonestExpiry != 0, now >= soonestExpiry else { return [] }
            soonestExpiry = 0
            var due: [Subscriber] = []
            for members in bySession.values {
                for s in members.values {
                    guard let session = s.session else { continue }
                    if session.isExpired(at: now) { due.append(s) } else { noteExpiry(session.expiresAt) }
                }
            }
            return due
        }
        endSessions(of: due)
    }

    /// Ends every stream (graceful shutdown: SSE responses never end by themselves).
    package func closeAll() {
        for s in lock.withLock({ Array(subscribers.values) }) { s.close() }
    }
}

/// How a change appears to one reader. An update that moves a row out of the reader's
/// sight (e.g. its owner changed) is sent as a delete, so replicas drop the row; an update
/// judged on the patch alone would leave it behind.
enum Visibility {
    case full, asDelete, hidden

    static func of(kind: ChangeKind, data: JSONValue?, before: JSONValue?, _ canRead: (JSONValue?) -> Bool) -> Visibility {
        switch kind {
        case .insert: return canRead(data) ? .full : .hidden
        case .delete: return canRead(before) ? .full : .hidden
        case .update:
            if canRead(data) { return .full }
            if before != nil, canRead(before) { return .asDelete }
            return .hidden
        }
    }
}
