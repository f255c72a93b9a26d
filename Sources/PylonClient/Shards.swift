import Foundation

/// One event of a shard subscription.
public enum ShardEvent: Sendable, Equatable {
    /// A snapshot for this subscriber after tick `tick`.
    case frame(tick: Int64?, snapshot: JSON)
    /// One of this subscriber's inputs was applied in `tick`.
    case ack(clientSeq: Int64?, seq: Int64?, tick: Int64?)
    /// The sim refused one of this subscriber's inputs.
    case refused(PylonError, clientSeq: Int64?, seq: Int64?)
    /// The subscription ended (`shard_stopped`, `replaced`, `session_ended`…); nothing follows.
    case end(reason: String)
}

/// Shards (`/api/shards/*`): a subscription is a server-sent event stream of snapshots and
/// input outcomes; inputs are posted and answered with their server `seq`, their outcome
/// arriving later on the stream as an `ack` or `refused` event.
public final class Shards: Sendable {
    private let http: HTTP

    init(http: HTTP) { self.http = http }

    /// `GET /api/shards/:id`.
    public func get(_ id: String) async throws(PylonError) -> JSON {
        try await http.request("/api/shards/\(escape(id))")
    }

    /// Subscribes to shard `id` as subscriber `sid` (default: the caller). The stream ends
    /// after `.end`, throws the host's refusal (403, 404, 429 `SHARD_FULL`) as a PylonError,
    /// and ends the subscription when the reader stops iterating.
    public func connect(_ id: String, sid: String? = nil) -> AsyncThrowingStream<ShardEvent, Error> {
        let path = "/api/shards/\(escape(id))/connect" + (sid.map { "?sid=\(escape($0))" } ?? "")
        let items = http.serverEvents("GET", path)
        let (events, continuation) = AsyncThrowingStream<ShardEvent, Error>.makeStream()
        let reader = Task {
            do {
                for try await item in items {
                    switch item {
                    case let .plain(reply):
                        _ = try HTTP.json(reply)
                        throw PylonError(code: "BAD_RESPONSE", message: "the shard answered without an event stream", status: reply.status)
                    case let .event(e):
                        guard let event = Self.event(e) else { continue }
                        continuation.yield(event)
                        if case .end = event { continuation.finish(); return }
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in reader.cancel() }
        return events
    }

    private static func event(_ e: ServerEvent) -> ShardEvent? {
        let json = (try? JSON.parse(e.data)) ?? .null
        switch e.event {
        case "message": return .frame(tick: e.id.flatMap { Int64($0) } ?? json["tick"]?.intValue, snapshot: json)
        case "ack": return .ack(clientSeq: json["client_seq"]?.intValue, seq: json["seq"]?.intValue, tick: json["tick"]?.intValue)
        case "error":
            return .refused(PylonError.fromBody(status: 200, body: json), clientSeq: json["client_seq"]?.intValue,
                            seq: json["seq"]?.intValue)
        case "end": return .end(reason: json["reason"]?.stringValue ?? "")
        default: return nil
        }
    }

    /// Queues `input` for the shard's next tick; answers its server `seq`.
    @discardableResult
    public func input(_ id: String, _ input: JSON, clientSeq: Int64? = nil,
                      subscriberId: String? = nil) async throws(PylonError) -> Int64 {
        var body: [String: JSON] = ["input": input]
        if let clientSeq { body["client_seq"] = .int(clientSeq) }
        if let subscriberId { body["subscriber_id"] = .string(subscriberId) }
        let r = try await http.request("/api/shards/\(escape(id))/input", body: .object(body))
        return r["seq"]?.intValue ?? 0
    }
}
