import Foundation
import PylonCore
import PylonJSON

/// What a subscriber is told about one of its inputs, with the next frame it gets.
package enum ShardNote: Sendable {
    /// Applied: the client's `client_seq` (if it sent one), the server's seq, the tick.
    case ack(clientSeq: UInt64?, seq: UInt64, tick: UInt64)
    /// Refused by the sim (`authorize_input` or `apply_input`).
    case rejected(clientSeq: UInt64?, seq: UInt64, tick: UInt64, code: String, message: String)

    /// The note as a JSON object (the SSE `ack` / `error` events' data).
    package var json: JSONValue {
        func seqs(_ c: UInt64?, _ s: UInt64, _ t: UInt64) -> [(String, JSONValue)] {
            [("client_seq", c.map { .int(Int64(clamping: $0)) } ?? .null), ("seq", .int(Int64(clamping: s))), ("tick", .int(Int64(clamping: t)))]
        }
        switch self {
        case let .ack(c, s, t): return .object(seqs(c, s, t))
        case let .rejected(c, s, t, code, message):
            return .object([("error", .object([("code", .string(code)), ("message", .string(message))]))] + seqs(c, s, t))
        }
    }
}

/// What a subscriber's sender gets next.
package enum ShardDelivery: Sendable {
    /// The newest snapshot (older unsent ones were dropped), after the notes collected since
    /// the last frame.
    case frame(notes: [ShardNote], tick: UInt64, snapshot: [UInt8])
    /// Time for a keepalive (`poke`), nothing new.
    case heartbeat
    /// The subscription is over (the shard stopped, or another connection took this id).
    case ended(reason: String)
}

/// One subscriber of a shard: a mailbox that holds only the NEWEST snapshot. A tick
/// replaces an unsent snapshot (counted in `dropped`), so a slow reader never makes the
/// shard queue frames for it: its memory is one snapshot plus a bounded list of notes.
///
/// Threads: the tick threads offer, one sender task takes (`next`); all state is under `lock`.
package final class ShardSubscriber: @unchecked Sendable {
    package let sid: String
    /// Who attached it: only this caller (or the admin) may send inputs as `sid`.
    package let auth: AuthContext
    /// The most notes kept between two frames; past it the oldest go.
    static let maxNotes = 1024

    private let lock = NSLock()
    private var frame: (tick: UInt64, snapshot: [UInt8])?
    private var notes: [ShardNote] = []
    private var poked = false
    private var endReason: String?
    private var waiter: CheckedContinuation<ShardDelivery, Never>?
    /// `poll`'s wakeup, armed when it found nothing.
    private var armedWake: (@Sendable () -> Void)?
    private var _dropped = 0
    /// When the sender last took a frame (or the subscriber was made), monotonic ns.
    private var lastTaken = TickScheduler.now()
    /// A subscriber whose sender has taken no frame for this long has no live sender (its
    /// connection died before the stream began): the shard ends it.
    static let stallNanos: Int64 = 60_000_000_000

    package init(sid: String, auth: AuthContext) {
        self.sid = sid
        self.auth = auth
    }

    /// Snapshots replaced before they were sent.
    package var dropped: Int { lock.withLock { _dropped } }
    package var isEnded: Bool { lock.withLock { endReason != nil } }

    /// Whether no frame was taken for `stallNanos` while frames were offered.
    func stalled(now: Int64) -> Bool { lock.withLock { frame != nil && now - lastTaken > Self.stallNanos } }

    /// The tick's snapshot; returns whether an unsent one was dropped for it.
    @discardableResult
    func offer(tick: UInt64, snapshot: [UInt8]) -> Bool {
        var pending: (@Sendable () -> Void)?
        let (w, d, dropped) = lock.withLock { () -> (CheckedContinuation<ShardDelivery, Never>?, ShardDelivery?, Bool) in
            guard endReason == nil else { return (nil, nil, false) }
            let dropped = frame != nil
            if dropped { _dropped += 1 }
            frame = (tick, snapshot)
            guard let w = waiter else {
                pending = takeWakeLocked()
                return (nil, nil, dropped)
            }
            waiter = nil
            return (w, takeLocked(), dropped)
        }
        if let w, let d { w.resume(returning: d) }
        pending?()
        return dropped
    }

    func note(_ n: ShardNote) {
        lock.withLock {
            guard endReason == nil else { return }
            if notes.count >= Self.maxNotes { notes.removeFirst(notes.count - Self.maxNotes + 1) }
            notes.append(n)
        }
    }

    /// Wakes the sender for a keepalive.
    package func poke() { resume { poked = true } }

    /// Ends the subscription; the sender gets `.ended(reason)` once it has sent what it holds.
    package func end(_ reason: String) {
        resume { if endReason == nil { endReason = reason } }
    }

    private func resume(_ change: () -> Void) {
        var pending: (@Sendable () -> Void)?
        let (w, d) = lock.withLock { () -> (CheckedContinuation<ShardDelivery, Never>?, ShardDelivery?) in
            change()
            guard let w = waiter, let d = takeLocked() else {
                pending = takeWakeLocked()
                return (nil, nil)
            }
            waiter = nil
            return (w, d)
        }
        if let w, let d { w.resume(returning: d) }
        pending?()
    }

    // MARK: Pulled by a transport plugin (`pylon.host.shards/1`)

    /// The next delivery if one is ready; otherwise nil, and `wake` is called (once, from
    /// the thread that makes one ready) when one is. For a sender that cannot wait in a
    /// task: a transport plugin pulls when its connection can take a frame.
    package func poll(orWake wake: @escaping @Sendable () -> Void) -> ShardDelivery? {
        lock.withLock {
            if let d = takeLocked() { return d }
            armedWake = wake
            return nil
        }
    }

    /// Under `lock`: the armed wakeup when something is ready for `poll` (disarmed).
    private func takeWakeLocked() -> (@Sendable () -> Void)? {
        guard let w = armedWake, frame != nil || endReason != nil else { return nil }
        armedWake = nil
        return w
    }

    /// The next delivery, waiting for one.
    package func next() async -> ShardDelivery {
        await withCheckedContinuation { c in
            let ready = lock.withLock { () -> ShardDelivery? in
                if let d = takeLocked() { return d }
                waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Under `lock`: what is ready to deliver, taken out of the mailbox.
    private func takeLocked() -> ShardDelivery? {
        if let f = frame {
            frame = nil
            poked = false
            lastTaken = TickScheduler.now()
            let n = notes
            notes = []
            return .frame(notes: n, tick: f.tick, snapshot: f.snapshot)
        }
        if let r = endReason { return .ended(reason: r) }
        if poked {
            poked = false
            return .heartbeat
        }
        return nil
    }
}
