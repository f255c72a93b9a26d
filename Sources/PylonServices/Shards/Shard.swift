import Foundation
import PylonCore
import PylonJSON

/// One running instance of a sim (pylon-aux.md §5.3). Requests from outside — inputs and
/// subscriptions — are queued under `lock` and handled by the shard's TURN, which a tick
/// thread of the `TickScheduler` runs once per tick; every sim call happens inside a turn,
/// and a shard is never in two turns at once, so the sim's one-thread-at-a-time rule holds.
///
/// A turn: admit waiting subscribers (`authorize_subscribe`), apply the queued inputs in
/// order (`authorize_input`, `apply_input`; each sender gets an ack or an error with its
/// next frame), `tick`, a snapshot for each subscriber (`snapshot_for`, checked to be JSON),
/// `is_finished`, and the idle count. A sim that breaks the contract (an error from `tick`,
/// a snapshot that is not JSON, a turn past the budget) stops the shard; `onStop` logs why.
package final class Shard: @unchecked Sendable {
    package let id: String
    package let sim: SimPlugin
    package let settings: ShardSettings
    /// The players of a shard with a roster: a matched one, or one created with `players`
    /// (nil: none, the sim alone admits).
    package let roster: ShardRoster?

    struct PendingInput {
        let sid: String
        let input: [UInt8]
        let authJSON: [UInt8]
        let clientSeq: UInt64?
        let seq: UInt64
        let receivedAt: Int64
    }

    struct PendingJoin {
        let subscriber: ShardSubscriber
        let authJSON: [UInt8]
        let done: CheckedContinuation<Result<ShardSubscriber, HostError>, Never>
    }

    private let lock = NSLock()
    /// The sim's state: touched only inside a turn, or by `stop` when no turn runs.
    private var state: OpaquePointer?
    private var inputs: [PendingInput] = []
    /// The bytes of the queued inputs (bounded by `maxQueuedBytes`).
    private var queuedBytes = 0
    /// The largest input (JSON bytes) and the most input bytes waiting for one tick: a
    /// client cannot make a shard hold more than this whatever `max_input_queue` says.
    package static let maxInputBytes = 64 * 1024
    static let maxQueuedBytes = 16 * 1024 * 1024
    private var joins: [PendingJoin] = []
    private var subscribers: [String: ShardSubscriber] = [:]
    private var tickNo: UInt64 = 0
    private var nextSeq: UInt64 = 1
    private var inTurn = false
    private var stopReason: String?
    private var idleTicks = 0
    /// Whether a subscriber was ever admitted (the matchmaker stops matches nobody joins).
    private var everJoined = false
    private var lastTickAt: Int64?
    /// Called once, outside the lock, when the shard stops: (shard, reason, failed).
    var onStop: (@Sendable (Shard, String, Bool) -> Void)?
    /// Saves the state every `settings.persistEveryTicks` ticks (nil: not persisted).
    var saver: ShardSaver?
    let metrics: Metrics

    /// `tick`: the last tick the state has seen (a restored shard goes on from its saved tick).
    init(id: String, sim: SimPlugin, settings: ShardSettings, roster: ShardRoster?, state: OpaquePointer, metrics: Metrics, tick: UInt64 = 0) {
        self.id = id
        self.roster = roster
        tickNo = tick
        self.sim = sim
        self.settings = settings
        self.state = state
        self.metrics = metrics
    }

    package struct Status: Sendable {
        package let running: Bool
        package let tick: UInt64
        package let subscribers: Int
        package let inputQueue: Int
    }

    package var status: Status {
        lock.withLock { Status(running: stopReason == nil, tick: tickNo, subscribers: subscribers.count, inputQueue: inputs.count) }
    }

    package var isRunning: Bool { lock.withLock { stopReason == nil } }

    /// Whether anyone (a player, or the admin) has subscribed since the shard started.
    package var hasBeenJoined: Bool { lock.withLock { everJoined } }

    /// The shard as the routes and `ctx.shards` show it.
    package var json: JSONValue {
        let st = status
        return .object([
            ("id", .string(id)), ("sim", .string(sim.name)), ("running", .bool(st.running)),
            ("tick", .int(Int64(clamping: st.tick))), ("subscribers", .int(Int64(st.subscribers))),
            ("input_queue", .int(Int64(st.inputQueue))),
        ] + savedSettings)
    }

    /// The settings as shown and saved: the roster's players beside them.
    var savedSettings: [(String, JSONValue)] {
        settings.json + (roster.map { [("players", $0.json)] } ?? [])
    }

    /// Whether `auth` may know of this shard at all (one with a roster: its players and the admin).
    package func visible(to auth: AuthContext) -> Bool { roster?.admits(auth) ?? true }

    /// On a shard with a roster, refuses a player acting as another subscriber (`SID_NOT_YOURS`).
    package func check(subscriber sid: String, for auth: AuthContext) throws(HostError) {
        try roster?.check(subscriber: sid, for: auth)
    }

    /// Whether `auth` attached the subscriber `sid` (the admin may act as any attached one).
    package func attached(_ sid: String, by auth: AuthContext) -> Bool {
        lock.withLock {
            guard let s = subscribers[sid], !s.isEnded else { return false }
            return auth.isAdmin || (s.auth.userID != nil && s.auth.userID == auth.userID)
        }
    }

    /// Queues an input for the next tick; returns its server seq.
    package func push(sid: String, input: [UInt8], auth: AuthContext, clientSeq: UInt64?) throws(HostError) -> UInt64 {
        let authJSON = auth.functionJSONBytes
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        guard input.count <= Self.maxInputBytes else {
            throw HostError(status: 413, code: "INPUT_TOO_LARGE", message: "an input is at most \(Self.maxInputBytes) bytes of JSON; send less")
        }
        let result: Result<UInt64, HostError> = lock.withLock {
            guard stopReason == nil else { return .failure(Self.stopped(id)) }
            guard inputs.count < settings.maxInputQueue && queuedBytes + input.count <= Self.maxQueuedBytes else {
                return .failure(HostError(status: 429, code: "INPUT_QUEUE_FULL",
                                          message: "shard \(id) has as many inputs waiting for its next tick as it takes; send fewer inputs"))
            }
            let seq = nextSeq
            nextSeq += 1
            inputs.append(PendingInput(sid: sid, input: input, authJSON: authJSON, clientSeq: clientSeq, seq: seq, receivedAt: now))
            queuedBytes += input.count
            return .success(seq)
        }
        return try result.get()
    }

    /// Subscribes `sid` for `auth` at the next turn (after `authorize_subscribe`); a
    /// subscriber already attached under `sid` is ended ("replaced").
    package func subscribe(sid: String, auth: AuthContext) async -> Result<ShardSubscriber, HostError> {
        let sub = ShardSubscriber(sid: sid, auth: auth)
        return await withCheckedContinuation { c in
            let refused: HostError? = lock.withLock {
                guard stopReason == nil else { return Self.stopped(id) }
                joins.append(PendingJoin(subscriber: sub, authJSON: auth.functionJSONBytes, done: c))
                return nil
            }
            if let refused { c.resume(returning: .failure(refused)) }
        }
    }

    /// Detaches `sub` (if it is still the one under its id).
    package func unsubscribe(_ sub: ShardSubscriber) {
        lock.withLock { if subscribers[sub.sid] === sub { subscribers[sub.sid] = nil } }
        sub.end("unsubscribed")
    }

    static func stopped(_ id: String) -> HostError {
        HostError(status: 410, code: "SHARD_STOPPED", message: "shard \(id) has stopped; create or find another shard")
    }

    // MARK: The turn

    /// One turn at monotonic time `now` (nanoseconds). Returns false once the shard has stopped.
    func turn(now: Int64) -> Bool {
        var idleStop = false
        let taken = lock.withLock { () -> (OpaquePointer, [PendingInput], [PendingJoin], UInt64)? in
            guard stopReason == nil, let state else { return nil }
            // An event-driven shard ticks only for queued work.
            if settings.tickRateHz == 0 && inputs.isEmpty && joins.isEmpty {
                idleStop = countIdleLocked(subscribers.isEmpty)
                return nil
            }
            inTurn = true
            tickNo += 1
            let i = inputs, j = joins
            inputs = []
            queuedBytes = 0
            joins = []
            return (state, i, j, tickNo)
        }
        guard let (state, inputs, joins, tick) = taken else {
            if idleStop { stop("idle", failed: false) }
            return isRunning
        }
        admit(joins, state)
        apply(inputs, state, tick: tick)
        let dt = lastTickAt.map { settings.tickRateHz == 0 ? now - $0 : settings.intervalNanos } ?? 0
        lastTickAt = now
        metrics.add("shard_ticks_total", 1)
        var failure: String?
        var finished = false
        if let e = sim.tick(state, tick: tick, dtNanos: dt) {
            failure = "its tick failed: \(e.code): \(e.message)"
        } else if let problem = deliver(state, tick: tick) {
            failure = problem
        } else {
            finished = sim.isFinished(state)
        }
        if failure == nil && !finished, let saver, settings.persistEveryTicks > 0, tick % UInt64(settings.persistEveryTicks) == 0 {
            saver.save(self, state: state, tick: tick)
        }
        idleStop = lock.withLock {
            inTurn = false
            return failure == nil && !finished && countIdleLocked(inputs.isEmpty && subscribers.isEmpty)
        }
        if let failure {
            stop(failure, failed: true)
        } else if finished {
            stop("finished", failed: false)
        } else if idleStop {
            stop("idle", failed: false)
        } else {
            releaseIfStopped()  // stopped from outside while the turn ran
        }
        return isRunning
    }

    /// Under `lock`: counts an idle tick (or resets the count); true when the shard has
    /// been idle for its `idleTicksBeforeShutdown`.
    private func countIdleLocked(_ idle: Bool) -> Bool {
        guard idle else {
            idleTicks = 0
            return false
        }
        idleTicks += 1
        return settings.idleTicksBeforeShutdown > 0 && idleTicks >= settings.idleTicksBeforeShutdown
    }

    private func admit(_ joins: [PendingJoin], _ state: OpaquePointer) {
        for j in joins {
            let sid = j.subscriber.sid
            if let e = sim.authorizeSubscribe(state, subscriber: sid, auth: j.subscriber.auth, authJSON: j.authJSON) {
                j.done.resume(returning: .failure(HostError(status: 403, code: e.code.isEmpty ? "UNAUTHORIZED" : e.code, message: e.message)))
                continue
            }
            let (old, full) = lock.withLock { () -> (ShardSubscriber?, Bool) in
                let old = subscribers[sid]
                if old == nil && settings.maxSubscribers > 0 && subscribers.count >= settings.maxSubscribers { return (nil, true) }
                subscribers[sid] = j.subscriber
                everJoined = true
                return (old, false)
            }
            if full {
                j.done.resume(returning: .failure(HostError(status: 429, code: "SHARD_FULL",
                                                            message: "shard \(id) has its \(settings.maxSubscribers) subscribers; try again later or another shard")))
                continue
            }
            old?.end("replaced")
            j.done.resume(returning: .success(j.subscriber))
        }
    }

    private func apply(_ inputs: [PendingInput], _ state: OpaquePointer, tick: UInt64) {
        for i in inputs {
            let sub = lock.withLock { subscribers[i.sid] }
            metrics.add("shard_inputs_total", 1)
            let refusal = sim.authorizeInput(state, subscriber: i.sid, authJSON: i.authJSON, input: i.input)
                ?? sim.applyInput(state, subscriber: i.sid, input: i.input, receivedAt: i.receivedAt)
            if let e = refusal {
                metrics.add("shard_inputs_rejected_total", 1)
                sub?.note(.rejected(clientSeq: i.clientSeq, seq: i.seq, tick: tick, code: e.code, message: e.message))
            } else {
                sub?.note(.ack(clientSeq: i.clientSeq, seq: i.seq, tick: tick))
            }
        }
    }

    /// Each subscriber's snapshot into its mailbox; a problem (the sim broke the contract)
    /// is returned as the reason to stop.
    private func deliver(_ state: OpaquePointer, tick: UInt64) -> String? {
        let subs = lock.withLock { Array(subscribers.values) }
        let now = TickScheduler.now()
        for s in subs where !s.isEnded {
            if s.stalled(now: now) {
                unsubscribe(s)
                continue
            }
            switch sim.snapshot(state, subscriber: s.sid) {
            case let .failure(e): return "its snapshot_for failed: \(e.code): \(e.message)"
            case let .success(bytes):
                guard !bytes.isEmpty, (try? JSONParser.validate(bytes)) != nil else {
                    let head = String(decoding: bytes.prefix(32), as: UTF8.self).debugDescription
                    return "snapshot_for returned \(bytes.count) bytes that are not a JSON document (they begin \(head))"
                }
                if s.offer(tick: tick, snapshot: bytes) { metrics.add("shard_frames_dropped_total", 1) }
            }
        }
        return nil
    }

    /// Stops the shard (the first reason wins): pending subscriptions are refused,
    /// subscribers ended with `reason`, queued inputs dropped, `onStop` told; the sim's state
    /// is freed now if no turn runs, else by that turn when it returns.
    package func stop(_ reason: String, failed: Bool) {
        let taken = lock.withLock { () -> ([PendingJoin], [ShardSubscriber])? in
            guard stopReason == nil else { return nil }
            stopReason = reason
            let j = joins, s = Array(subscribers.values)
            joins = []
            inputs = []
            queuedBytes = 0
            subscribers = [:]
            return (j, s)
        }
        if let (joins, subs) = taken {
            for j in joins { j.done.resume(returning: .failure(Self.stopped(id))) }
            for s in subs { s.end(reason) }
            onStop?(self, reason, failed)
        }
        releaseIfStopped()
    }

    /// The stop reason when the host stops: a persisting shard then saves once more.
    package static let hostStopping = "the host is stopping"

    /// Frees the sim's state once the shard has stopped and no turn holds it; when the host
    /// is stopping, a persisting shard saves it first (and waits for the write).
    private func releaseIfStopped() {
        let taken = lock.withLock { () -> (OpaquePointer, Bool, UInt64)? in
            guard stopReason != nil, !inTurn, let s = state else { return nil }
            state = nil
            return (s, stopReason == Self.hostStopping, tickNo)
        }
        guard let (st, final, tick) = taken else { return }
        if final, let saver, settings.persistEveryTicks > 0 { saver.saveFinal(self, state: st, tick: tick) }
        sim.destroy(st)
    }

    /// Whether the state has been freed (no turn runs any more).
    var released: Bool { lock.withLock { state == nil } }
}
