import NIOCore

/// The write-progress deadline of one connection that streams (PYLON_WRITE_TIMEOUT, and
/// PYLON_WS_WRITE_TIMEOUT for WebSockets): a connection with writes pending and none of them
/// finished for `timeout` is stalled, and is closed, so a client that never reads cannot
/// keep its connection and its unsent data in the host. Kept by `WebSocketConnection` and
/// by `HTTPFront` for answers written as they come (SSE streams, streamed function calls,
/// file downloads).
/// On a WebSocket the ping timeout alone does not do it: the close frame it sends waits
/// behind those frames; an SSE stream has no ping at all.
///
/// Only the writes that carry the stream count (chunks of live frames, pages of the log,
/// close frames, an answer's body chunks); an idle connection has none pending and arms no
/// timer. Event loop only.
struct WriteProgressDeadline {
    enum Verdict {
        /// Nothing pending: no check needed until the next write.
        case idle
        /// Writes are pending and the last progress is recent: check again then.
        case checkAt(NIODeadline)
        /// Pending writes made no progress for `timeout`.
        case stalled
    }

    /// nil: never (a timeout of 0).
    let timeout: TimeAmount?
    /// The check scheduled on the event loop, if any (the connection cancels it when it closes).
    var timer: Scheduled<Void>?
    private var pending = 0
    /// When a write last finished, or the first of the pending ones began.
    private var lastProgress = NIODeadline.now()

    init(seconds: Double) {
        timeout = seconds > 0 ? .nanoseconds(Int64(seconds * 1e9)) : nil
    }

    /// A write began. Returns when to check it, if no check is scheduled yet.
    mutating func began(now: NIODeadline) -> NIODeadline? {
        guard let timeout else { return nil }
        if pending == 0 { lastProgress = now }
        pending += 1
        return timer == nil ? lastProgress + timeout : nil
    }

    /// A write finished (sent, or failed because the connection is closing): progress.
    mutating func ended(now: NIODeadline) {
        pending = max(0, pending - 1)
        lastProgress = now
    }

    /// The scheduled check ran.
    mutating func check(now: NIODeadline) -> Verdict {
        timer = nil
        guard pending > 0, let timeout else { return .idle }
        let due = lastProgress + timeout
        return now >= due ? .stalled : .checkAt(due)
    }
}
