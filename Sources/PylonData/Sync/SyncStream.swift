import Foundation
import PylonCore
import PylonJSON

/// Where a subscriber's frames go: a WebSocket or an SSE response.
package protocol SyncSink: Sendable {
    /// Sends one change event (`seq` for SSE `id:` lines).
    func sendChange(_ payload: String, seq: Int64) async throws
    /// Sends a non-change frame (relays). SSE sinks may ignore it.
    func sendRelay(_ payload: String) async throws
    /// Sends the RESYNC_REQUIRED notice and closes.
    func sendResyncAndClose(_ error: HostError) async throws
    /// Keepalive (SSE comment); WS relies on protocol pings.
    func sendKeepalive() async throws
    /// Tells the client its session was revoked or expired, and ends the stream.
    func sendSessionEnded() async throws
    /// Waits until what was sent so far left for the client (after each page of the log).
    func flush() async throws
}

/// Wakes an SSE sender task: an `AsyncStream` that coalesces wake-ups and ends when the
/// subscriber closes.
struct StreamWaker: SubscriberWaker {
    let continuation: AsyncStream<Void>.Continuation

    /// A waker and the wake-ups it yields.
    static func make() -> (StreamWaker, AsyncStream<Void>) {
        let (wakes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        return (StreamWaker(continuation: continuation), wakes)
    }

    func wake() { continuation.yield() }
    func subscriberClosed() { continuation.finish() }
}

/// Delivery to a subscriber: resume from a cursor through the durable log, then live events,
/// with no gap and no duplicate at the seam (see `Subscriber.goLive`), every change filtered
/// by the connection's read policy. SSE responses run `run` (a sender task per stream); a
/// WebSocket delivers live events from its event loop (`WebSocketConnection`) and uses
/// `resume` only while it reads the log.
package struct SyncStream: Sendable {
    let hub: ChangeHub
    let changes: ChangeLog
    /// Whether this connection may see this change (the full row is in `event.row`).
    let canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool

    package init(hub: ChangeHub, changes: ChangeLog,
                 canRead: @escaping @Sendable (AuthContext, String, JSONValue?) -> Bool) {
        self.hub = hub
        self.changes = changes
        self.canRead = canRead
    }

    /// Runs until the connection ends or must resync. `since` nil = live from the moment `sub`
    /// subscribed (`Subscriber.start`).
    package func run(_ sub: Subscriber, since: Int64?, epoch: String?, sink: some SyncSink) async throws {
        let (waker, wakes) = StreamWaker.make()
        sub.attach(waker)
        try await deliver(sub, since: since, epoch: epoch, sink: sink, wakes: wakes)
        if sub.sessionEnded { try await sink.sendSessionEnded() }
    }

    private func deliver(_ sub: Subscriber, since: Int64?, epoch: String?, sink: some SyncSink,
                         wakes: AsyncStream<Void>) async throws {
        var cursor: Int64
        if let since {
            guard let c = try await resume(sub, from: since, epoch: epoch, sink: sink) else { return }
            cursor = c
        } else {
            // Live from where the hub was when the stream subscribed (before its response began).
            cursor = sub.start
            _ = sub.goLive()
        }
        for await _ in wakes {
            // A wake-up buffered before `close` still arrives; an ended stream sends nothing more.
            if sub.isClosed { return }
            let (messages, overflowed) = sub.drain()
            if overflowed {
                // The queue was dropped: continue from the durable log, then go live again.
                hub.metrics.add("realtime_queue_fallbacks_total", 1)
                guard let c = try await resume(sub, from: cursor, epoch: nil, sink: sink) else { return }
                cursor = c
                continue
            }
            if messages.isEmpty {
                try await sink.sendKeepalive()
                continue
            }
            for m in messages {
                switch m {
                case let .change(e):
                    // The hub already applied the read policy for this identity.
                    guard e.seq > cursor else { continue }
                    cursor = e.seq
                    try await sink.sendChange(e.payload, seq: e.seq)
                case let .relay(text):
                    try await sink.sendRelay(text)
                case let .leaves(range):
                    for text in hub.leaveFrames(range) { try await sink.sendRelay(text) }
                }
            }
            sub.sent(messages.reduce(0) { $0 + $1.byteCount })
            sub.madeProgress()
        }
    }

    /// Reads the log from `from` up to the present, switches the subscriber to live, and
    /// reads once more up to whatever was published meanwhile (duplicates are dropped by
    /// seq later). Returns the cursor, or nil after telling the client to resync.
    package func resume(_ sub: Subscriber, from: Int64, epoch: String?, sink: some SyncSink) async throws -> Int64? {
        do {
            var cursor = try await catchUp(sub, from: from, epoch: epoch, sink: sink)
            let newest = sub.goLive()
            if newest > cursor { cursor = try await catchUp(sub, from: cursor, epoch: nil, sink: sink) }
            return cursor
        } catch let e as HostError where e.code == "RESYNC_REQUIRED" {
            try await sink.sendResyncAndClose(e)
            return nil
        }
    }

    /// Sends every logged event after `from`, page by page; returns the new cursor.
    private func catchUp(_ sub: Subscriber, from: Int64, epoch: String?, sink: some SyncSink) async throws -> Int64 {
        var cursor = from
        var epoch = epoch
        // A stream ended meanwhile (its session was revoked) sends no more pages.
        while !sub.isClosed {
            let page = try await changes.pull(since: cursor, limit: 1000, epoch: epoch)
            epoch = nil
            for e in page.events {
                if let json = e.visibleJSON({ canRead(sub.auth, e.entity, $0) }) {
                    try await sink.sendChange(json, seq: e.seq)
                }
            }
            cursor = page.lastSeq
            try await sink.flush()
            sub.madeProgress()
            if !page.hasMore { return cursor }
        }
        return cursor
    }
}
