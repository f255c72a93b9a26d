import Foundation
import NIOConcurrencyHelpers

/// A room event from the realtime stream.
public struct RoomEvent: Sendable {
    /// `join`, `leave`, `presence` or `broadcast`.
    public var type: String
    public var room: String
    public var userId: String?
    public var sender: String?
    public var topic: String?
    public var data: JSON?
    /// The whole frame as the host sent it.
    public var raw: JSON

    init?(json: JSON) {
        guard let type = json["type"]?.stringValue, ["join", "leave", "presence", "broadcast"].contains(type),
              let room = json["room"]?.stringValue else { return nil }
        self.type = type
        self.room = room
        userId = json["user_id"]?.stringValue
        sender = json["sender"]?.stringValue
        topic = json["topic"]?.stringValue
        data = json["data"]
        raw = json
    }
}

/// A member of a room.
public struct Peer: Sendable, Equatable {
    public var userId: String
    public var data: JSON?
    public var joinedAt: JSON?

    init(json: JSON) {
        userId = json["user_id"]?.stringValue ?? ""
        data = json["data"]
        joinedAt = json["joined_at"]
    }
}

/// Rooms and presence (`/api/rooms/*`). Events reach members through the realtime stream,
/// so join once sync is live; the host drops a user from every room when their last stream
/// closes, so joined rooms are joined again (with the last data) on every reconnect.
public final class Rooms: Sendable {
    private let http: HTTP
    private let sync: SyncEngine
    private let joined = NIOLockedValueBox<[String: JSON]>([:])

    init(http: HTTP, sync: SyncEngine) {
        self.http = http
        self.sync = sync
    }

    /// Joins every room joined before again (called when a stream opens).
    func rejoin() async {
        for (room, data) in joined.withLockedValue({ $0 }) { _ = try? await join(room, data: data) }
    }

    /// Every event of `room` (join, leave, presence, broadcast) from now on, until the
    /// reader stops iterating.
    public func events(_ room: String) async -> AsyncStream<RoomEvent> {
        let messages = await sync.messages()
        let (stream, continuation) = AsyncStream<RoomEvent>.makeStream()
        let task = Task {
            for await m in messages {
                if let e = RoomEvent(json: m), e.room == room { continuation.yield(e) }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Joins with presence `data`; answers the peers already there.
    @discardableResult
    public func join(_ room: String, data: JSON = .null) async throws(PylonError) -> [Peer] {
        let r = try await http.request("/api/rooms/join", body: ["room": .string(room), "data": data])
        joined.withLockedValue { $0[room] = data }
        return (r["snapshot"]?["peers"]?.arrayValue ?? []).map(Peer.init(json:))
    }

    public func leave(_ room: String) async throws(PylonError) {
        joined.withLockedValue { $0[room] = nil }
        _ = try await http.request("/api/rooms/leave", body: ["room": .string(room)])
    }

    /// Replaces this user's presence data in the room; false when not in it.
    @discardableResult
    public func setPresence(_ room: String, data: JSON) async throws(PylonError) -> Bool {
        let r = try await http.request("/api/rooms/presence", body: ["room": .string(room), "data": data])
        let updated = r["updated"]?.boolValue == true
        if updated { joined.withLockedValue { if $0[room] != nil { $0[room] = data } } }
        return updated
    }

    /// Sends `data` under `topic` to the room's members; false when not in the room.
    @discardableResult
    public func broadcast(_ room: String, topic: String, data: JSON = .null) async throws(PylonError) -> Bool {
        let r = try await http.request("/api/rooms/broadcast", body: ["room": .string(room), "topic": .string(topic), "data": data])
        return r["broadcasted"]?.boolValue == true
    }

    /// The members of a room the caller is in.
    public func members(_ room: String) async throws(PylonError) -> [Peer] {
        let r = try await http.request("/api/rooms/\(escape(room))")
        return (r["members"]?.arrayValue ?? []).map(Peer.init(json:))
    }
}
