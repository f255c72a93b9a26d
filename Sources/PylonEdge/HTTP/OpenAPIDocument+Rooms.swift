import PylonJSON

/// The room routes (`RoomRoutes`): always served (rooms live in the host).
extension OpenAPIDocument {
    static let roomPaths: [(String, JSONValue)] = {
        let tags = ["rooms"]
        let name: JSONValue = ["type": "string", "minLength": 1, "maxLength": 128]
        let userID = nullable(["type": "string", "minLength": 1, "maxLength": 128, "description": "admins only: act as this user (null: yourself)"])
        let peer = object([("user_id", string), ("data", anyValue), ("joined_at", string)], required: ["user_id", "data", "joined_at"])
        let peers: JSONValue = ["type": "array", "items": peer]
        let snapshot = object([("type", ["enum": ["snapshot"]]), ("room", string), ("peers", peers)], required: ["type", "room", "peers"])
        let reason: JSONValue = ["enum": ["not_in_room", "room_empty"]]
        func post(_ id: String, _ summary: String, _ fields: [(String, JSONValue)], _ required: [String], _ reply: JSONValue) -> JSONValue {
            ["post": op(id, summary, access: .user, tags: tags, body: body(object(fields + [("user_id", userID)], required: required)),
                        responses: [("200", ok(reply))])]
        }
        return [
            ("/api/rooms/join", post("joinRoom", "join a room (created by the first join); the snapshot lists the peers present before",
                                     [("room", name), ("data", anyValue)], ["room"],
                                     object([("joined", string), ("snapshot", snapshot)], required: ["joined", "snapshot"]))),
            ("/api/rooms/leave", post("leaveRoom", "leave a room (idempotent)", [("room", name)], ["room"],
                                      object([("left", string), ("was_present", boolean)], required: ["left", "was_present"]))),
            ("/api/rooms/presence", post("setRoomPresence", "replace your presence data in a room (also your heartbeat)",
                                         [("room", name), ("data", anyValue)], ["room"],
                                         object([("updated", boolean), ("reason", reason)], required: ["updated"]))),
            ("/api/rooms/broadcast", post("broadcastToRoom", "send a message to the room's members (you must be one)",
                                          [("room", name), ("topic", name), ("data", anyValue)], ["room", "topic"],
                                          object([("broadcasted", boolean), ("reason", reason)], required: ["broadcasted"]))),
            ("/api/rooms", ["get": op("listRooms", "the rooms you are in (every room for admins)", access: .user, tags: tags,
                                      responses: [("200", ok(["type": "array", "items": object([("name", string), ("members", count)], required: ["name", "members"])]))])]),
            ("/api/rooms/{name}", ["get": op("getRoom", "a room's members, for its members (and admins)", access: .user, tags: tags,
                                             parameters: [pathParam("name")],
                                             responses: [("200", ok(object([("room", string), ("members", peers)], required: ["room", "members"])))])]),
        ]
    }()
}
