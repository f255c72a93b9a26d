import Foundation
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// `/api/rooms/*` (pylon-aux.md §4.2, Pylon's wire shapes): join, leave, presence and
/// broadcast by the signed-in user; events reach the room's members' realtime streams (WS
/// and SSE), not every client. Only members see a room: a non-member's broadcast, presence
/// or peer list answers as if the room did not exist, and `GET /api/rooms` lists the
/// caller's rooms (every room for admins). The admin token acts as the user named by
/// `"user_id"` in the body, or — for broadcasts — as no one.
extension RouteContext {
    func addRoomRoutes(_ router: Router<PylonRequestContext>, _ rooms: RoomService) {
        let registry = rooms.registry
        router.post("/api/rooms/join") { req, _ in
            let (auth, b) = (try await roomCaller(req), try await body(req))
            let user = try Self.roomMember(auth, b)
            let room = try Self.roomName(b)
            let joined = try registry.join(room, user: user, data: try Self.roomData(b, registry.limits))
            rooms.deliver(joined.events)
            return HTTPSupport.json(.object([("joined", .string(room)), ("snapshot", joined.snapshot)]))
        }
        router.post("/api/rooms/leave") { req, _ in
            let (auth, b) = (try await roomCaller(req), try await body(req))
            let user = try Self.roomMember(auth, b)
            let room = try Self.roomName(b)
            let left = registry.leave(room, user: user)
            rooms.deliver(left.map { [$0] } ?? [])
            return HTTPSupport.json(.object([("left", .string(room)), ("was_present", .bool(left != nil))]))
        }
        router.post("/api/rooms/presence") { req, _ in
            let (auth, b) = (try await roomCaller(req), try await body(req))
            let user = try Self.roomMember(auth, b)
            let room = try Self.roomName(b)
            guard let event = try registry.setPresence(room, user: user, data: try Self.roomData(b, registry.limits)) else {
                return HTTPSupport.json(.object([("updated", false), ("reason", "not_in_room")]))
            }
            rooms.deliver([event])
            return HTTPSupport.json(.object([("updated", true)]))
        }
        router.post("/api/rooms/broadcast") { req, _ in
            let (auth, b) = (try await roomCaller(req), try await body(req))
            let sender = try Self.roomActor(auth, b)
            let room = try Self.roomName(b)
            guard let topic = b["topic"]?.stringValue, Self.isRoomText(topic) else {
                throw HostError.badRequest("INVALID_TOPIC", "\"topic\" must be a string of 1 to 128 characters without control characters")
            }
            let (outcome, event) = try registry.broadcast(room, sender: sender, topic: topic, data: try Self.roomData(b, registry.limits))
            switch outcome {
            case .sent:
                rooms.deliver(event.map { [$0] } ?? [])
                return HTTPSupport.json(.object([("broadcasted", true)]))
            case .roomEmpty: return HTTPSupport.json(.object([("broadcasted", false), ("reason", "room_empty")]))
            case .notInRoom: return HTTPSupport.json(.object([("broadcasted", false), ("reason", "not_in_room")]))
            }
        }
        router.get("/api/rooms") { req, _ in
            let auth = try await roomCaller(req)
            let list = registry.list(for: auth.isAdmin ? nil : auth.userID)
            return HTTPSupport.json(.array(list.map { .object([("name", .string($0.name)), ("members", .int(Int64($0.members)))]) }))
        }
        router.get("/api/rooms/:name") { req, ctx in
            let auth = try await roomCaller(req)
            let room = try ctx.parameters.require("name")
            guard let peers = registry.peers(room, for: auth.isAdmin ? nil : auth.userID) else {
                throw HostError(status: 404, code: "ROOM_NOT_FOUND", message: "no room \(room) that you are in")
            }
            return HTTPSupport.json(.object([("room", .string(room)), ("members", .array(peers))]))
        }
    }

    /// Any signed-in caller (a session, API key or JWT of a user, or the admin token); 401 else.
    private func roomCaller(_ req: Request) async throws -> AuthContext {
        let who = try await auth(req)
        guard who.isAdmin || who.userID != nil else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "rooms need a signed-in user: send Authorization: Bearer <session token> or the session cookie")
        }
        return who
    }

    /// The user the request acts as: the caller's own; an admin may name another with
    /// `"user_id"`; the admin token without one acts as no one (nil).
    static func roomActor(_ auth: AuthContext, _ body: JSONValue) throws(HostError) -> String? {
        let own = auth.userID == AuthContext.admin.userID ? nil : auth.userID
        guard let given = body["user_id"], !given.isNull else { return own }
        guard let id = given.stringValue, isRoomText(id) else {
            throw HostError.badRequest("INVALID_DATA", "\"user_id\" must be a user id (a string of 1 to 128 characters)")
        }
        guard auth.isAdmin || id == own else {
            throw HostError.forbidden("only an admin may act as another user in a room; leave out \"user_id\"")
        }
        return id
    }

    /// `roomActor` for the operations that need a member.
    static func roomMember(_ auth: AuthContext, _ body: JSONValue) throws(HostError) -> String {
        guard let user = try roomActor(auth, body) else {
            throw HostError.badRequest("MISSING_FIELD", "the admin token is no user: name the member with \"user_id\"")
        }
        return user
    }

    static func roomName(_ body: JSONValue) throws(HostError) -> String {
        guard case .object = body else { throw HostError.badRequest("INVALID_DATA", "the body must be a JSON object") }
        guard let room = body["room"]?.stringValue, isRoomText(room) else {
            throw HostError.badRequest("INVALID_ROOM", "\"room\" must be a string of 1 to 128 characters without control characters")
        }
        return room
    }

    /// `data`, when given, up to `maxDataBytes` of JSON.
    static func roomData(_ body: JSONValue, _ limits: RoomLimits) throws(HostError) -> JSONValue? {
        guard let data = body["data"] else { return nil }
        let size = JSONWriter.encode(data).count
        guard size <= limits.maxDataBytes else {
            throw HostError(status: 413, code: "ROOM_DATA_TOO_LARGE", message: "\"data\" is \(size) bytes of JSON; rooms take at most \(limits.maxDataBytes)")
        }
        return data
    }

    static func isRoomText(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && !s.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}
