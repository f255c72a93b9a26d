import Foundation
import PylonCore

/// One WS or SSE connection's view of the hub. Its queue is bounded: when a consumer
/// falls more than `limit` messages or `byteLimit` bytes behind (bytes queued plus bytes
/// drained and not yet sent, see `sent`), the queue is dropped and the subscriber goes
/// back to reading the durable log from its cursor (so a large commit or a slow reader
/// loses nothing and memory stays bounded). A consumer that makes no progress at all for
/// a while after that is closed by its transport (`onOverflow` arms that watchdog).
///
/// Threads: `offer` is called by the hub's fan-out queue, `drain` by the connection's
/// sender (an SSE response's task, a WebSocket's event loop); a lock guards the state.
public final class Subscriber: @unchecked Sendable {
    public let id: UInt64
    public let auth: AuthContext
    public let address: String
    public let wantsRelays: Bool
    /// The session that authenticated the connection (nil: the admin token). The stream
    /// ends when that session is revoked or expires (`ChangeHub.endSessions`).
    package let session: StreamSession?
    let limit: Int
    /// The bound on `queuedBytes + unsentBytes` (PYLON_SYNC_QUEUE_BYTES). Payloads are
    /// shared between subscribers, but each counts them whole: it is what this connection
    /// would need the host to hold for it alone.
    let byteLimit: Int
    /// The newest seq the hub had fanned out when this subscriber registered: it is queued
    /// (or, catching up, noted) every event after it. A stream without a cursor starts here,
    /// and reads the log from here if its queue overflows before it sent anything.
    package let start: Int64
    private let lock = NSLock()
    private var queue: [HubMessage] = []
    /// Bytes of the messages in `queue`.
    private var queuedBytes = 0
    /// Bytes the sender drained and has not reported sent yet (`sent`).
    private var unsentBytes = 0
    private var live = false
    private var newestWhileCatchingUp: Int64 = 0
    private var overflowedFlag = false
    private var closedFlag = false
    private var sessionEndedFlag = false
    /// The connection's side: told when there is something to drain and when the subscriber
    /// closed. Attached right after subscribing (`attach`).
    private var waker: (any SubscriberWaker)?
    /// A wake-up was sent and the connection has not drained since: further offers need not
    /// wake it again (a commit of many events costs one wake-up per connection).
    private var wakePending = false
    /// Called (once) when the subscriber overflows, so a sender stuck writing to a dead
    /// socket can be closed from outside.
    package var onOverflow: (@Sendable () -> Void)?

    /// `live`: queue from the start (a connection with no cursor: what commits after it
    /// subscribed is what it must get, so nothing may be dropped before its sender runs).
    init(id: UInt64, auth: AuthContext, address: String, wantsRelays: Bool, session: StreamSession?, limit: Int,
         byteLimit: Int = .max, live: Bool = false, start: Int64 = 0) {
        self.byteLimit = byteLimit
        self.id = id
        self.start = start
        self.live = live
        self.auth = auth
        self.address = address
        self.wantsRelays = wantsRelays
        self.session = session
        self.limit = limit
    }

    /// Connects the subscriber to its connection; wakes it at once if something was queued
    /// (or the subscriber closed) before.
    package func attach(_ w: some SubscriberWaker) {
        let (pending, closed): (Bool, Bool) = lock.withLock {
            waker = w
            wakePending = !queue.isEmpty || overflowedFlag
            return (wakePending, closedFlag)
        }
        if closed { w.subscriberClosed() } else if pending { w.wake() }
    }

    /// Disconnects the connection (it closed): the waker refers back to it, so keeping it
    /// would keep both alive.
    package func detach() { lock.withLock { waker = nil } }

    /// The waker to call after a change of state, unless a wake-up is already pending. Must hold `lock`.
    private func takeWake() -> (any SubscriberWaker)? {
        guard !wakePending, let waker else { return nil }
        wakePending = true
        return waker
    }

    /// Queues a message, or notes the newest seq while the sender is reading the log.
    func offer(_ message: HubMessage) {
        var overflowNow = false
        let wake: (any SubscriberWaker)? = lock.withLock {
            guard !closedFlag else { return nil }
            if !live {
                if case let .change(e) = message { newestWhileCatchingUp = max(newestWhileCatchingUp, e.seq) }
                return nil
            }
            let bytes = message.byteCount
            if case let .leaves(more) = message, case let .leaves(queued)? = queue.last,
               queued.upperBound + 1 == more.lowerBound {
                // Leave notices that follow the last entry extend it: a burst of disconnects
                // costs each connection one entry, not one per leaver.
                queue[queue.count - 1] = .leaves(queued.lowerBound...more.upperBound)
            } else if queue.count >= limit || queuedBytes + unsentBytes + bytes > byteLimit {
                // Fall back to the log: forget the queue, remember how far the log must be read.
                // (Relays are not in the log: a consumer this far behind misses them.)
                overflowedFlag = true
                live = false
                queue.removeAll()
                queuedBytes = 0
                if case let .change(e) = message { newestWhileCatchingUp = max(newestWhileCatchingUp, e.seq) }
                overflowNow = true
            } else {
                queue.append(message)
                queuedBytes += bytes
            }
            return takeWake()
        }
        if overflowNow { onOverflow?() }
        wake?.wake()
    }

    private var progressCounter: UInt64 = 0

    /// Called by the sender after delivering frames; the watchdog compares snapshots.
    package func madeProgress() { lock.withLock { progressCounter &+= 1 } }

    /// The sender sent drained messages of `bytes` (`HubMessage.byteCount`): they no longer
    /// count against `byteLimit`.
    package func sent(_ bytes: Int) {
        guard bytes > 0 else { return }
        lock.withLock { unsentBytes = max(0, unsentBytes - bytes) }
    }
    package var progress: UInt64 { lock.withLock { progressCounter } }

    /// Records that `seq` was published without queueing it (the caller may not read it):
    /// a subscriber still catching up must read the log at least that far.
    func note(_ seq: Int64) {
        lock.withLock {
            if !live { newestWhileCatchingUp = max(newestWhileCatchingUp, seq) }
        }
    }

    /// Switches from log catch-up to live delivery; returns the newest seq published while
    /// catching up (the sender reads the log once more up to it; duplicates are dropped by seq).
    package func goLive() -> Int64 {
        lock.withLock {
            live = true
            return newestWhileCatchingUp
        }
    }

    /// Takes everything queued. `overflowed` true means the queue was dropped and the sender
    /// must read the log from its cursor, then call `goLive` again.
    package func drain() -> (messages: [HubMessage], overflowed: Bool) {
        lock.withLock {
            let out = queue
            // An idle connection keeps no queue storage (it is most of them).
            queue = []
            unsentBytes += queuedBytes
            queuedBytes = 0
            wakePending = false
            let o = overflowedFlag
            overflowedFlag = false
            return (out, o)
        }
    }

    /// Wakes the sender without a message (keepalives).
    package func poke() { lock.withLock { waker }?.wake() }

    package func close() {
        let w: (any SubscriberWaker)? = lock.withLock {
            guard !closedFlag else { return nil }
            closedFlag = true
            return waker
        }
        w?.subscriberClosed()
    }

    /// Ends the stream because its session was revoked or expired: the sender tells the
    /// client so (`SyncSink.sendSessionEnded`) and the connection relays nothing more.
    package func endSession() {
        lock.withLock { sessionEndedFlag = true }
        close()
    }

    package var isClosed: Bool { lock.withLock { closedFlag } }
    /// Messages waiting for the sender (metrics).
    var queued: Int { lock.withLock { queue.count } }
    /// Bytes queued or drained and not sent yet (metrics).
    var pendingBytes: Int { lock.withLock { queuedBytes + unsentBytes } }
    package var sessionEnded: Bool { lock.withLock { sessionEndedFlag } }
}

/// A subscriber's connection, as the hub's fan-out sees it. Called from any thread; each
/// transport hops to where it delivers (an SSE sender task, a WebSocket's event loop).
package protocol SubscriberWaker: Sendable {
    /// There is something to drain (or a keepalive is due).
    func wake()
    /// The subscriber closed (its session ended, or the host is shutting down).
    func subscriberClosed()
}
