import Foundation

/// Where a subscriber's frames go: a WebSocket or an SSE response.
protocol SyncSink: Sendable {
    /// Sends one change event (`seq` for SSE `id:` lines).
    func sendChange(_ payload: String, seq: Int64) async throws
    /// Sends a non-change frame (relays). SSE sinks may ignore it.
    func sendRelay(_ payload: String) async throws
    /// Sends the RESYNC_REQUIRED notice and closes.
    func sendResyncAndClose(_ error: HostError) async throws
    /// Keepalive (SSE comment); WS relies on protocol pings.
    func sendKeepalive() async throws
}

/// The per-connection delivery loop shared by WS and SSE: resume from a cursor through the
/// durable log, then live events, with no gap and no duplicate at the seam (see
/// `Subscriber.goLive`), every change filtered by the connection's read policy.
struct SyncStream: Sendable {
    let hub: ChangeHub
    let changes: ChangeLog
    /// Whether this connection may see this change (the full row is in `event.row`).
    let canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool

    /// Runs until the connection ends or must resync. `since` nil = live from now.
    func run(_ sub: Subscriber, since: Int64?, epoch: String?, sink: some SyncSink) async throws {
        var cursor: Int64 = 0
        if let since {
            cursor = since
            do {
                cursor = try await catchUp(sub, from: cursor, epoch: epoch, sink: sink)
                let newest = sub.goLive()
                if newest > cursor { cursor = try await catchUp(sub, from: cursor, epoch: nil, sink: sink) }
            } catch let e as HostError where e.code == "RESYNC_REQUIRED" {
                try await sink.sendResyncAndClose(e)
                return
            }
        } else {
            _ = sub.goLive()
        }
        for await _ in sub.wakes {
            let (messages, overflowed) = sub.drain()
            if overflowed {
                hub.metrics.add("realtime_slow_consumers_closed_total", 1)
                try await sink.sendResyncAndClose(HostError(
                    status: 410, code: "RESYNC_REQUIRED",
                    message: "this connection fell more than \(hub.queueLimit) events behind and was closed; pull from last_seq=\(cursor) and reconnect",
                    extra: [("oldest_seq", .int(cursor + 1)), ("last_seq", .int(cursor))]))
                return
            }
            if messages.isEmpty {
                try await sink.sendKeepalive()
                continue
            }
            for m in messages {
                switch m {
                case let .change(e):
                    guard e.seq > cursor else { continue }
                    cursor = e.seq
                    if canRead(sub.auth, e.entity, e.row) { try await sink.sendChange(e.payload, seq: e.seq) }
                case let .relay(text):
                    try await sink.sendRelay(text)
                }
            }
        }
    }

    /// Sends every logged event after `from`, page by page; returns the new cursor.
    private func catchUp(_ sub: Subscriber, from: Int64, epoch: String?, sink: some SyncSink) async throws -> Int64 {
        var cursor = from
        var epoch = epoch
        while true {
            let page = try await changes.pull(since: cursor, limit: 1000, epoch: epoch)
            epoch = nil
            for e in page.events {
                let row: JSONValue? = (e.dataJSON ?? e.beforeJSON).flatMap { try? JSONParser.parse($0) }
                if canRead(sub.auth, e.entity, row) {
                    var w = JSONWriter()
                    e.write(to: &w)
                    try await sink.sendChange(String(decoding: w.bytes, as: UTF8.self), seq: e.seq)
                }
            }
            cursor = page.lastSeq
            if !page.hasMore { return cursor }
        }
    }
}
