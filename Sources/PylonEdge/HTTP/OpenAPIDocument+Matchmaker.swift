import PylonJSON

/// The matchmaker's routes (`MatchmakerRoutes`), described with the shard routes.
extension OpenAPIDocument {
    static let matchmakerPaths: [(String, JSONValue)] = {
        let tags = ["shards"]
        let status: JSONValue = object([("status", ["type": "string", "enum": ["idle", "queued", "matched"]]),
                                         ("position", count), ("waiting_secs", count), ("shard_id", string)], required: ["status"])
        let criteria = object([("criteria", nullable(object([("mode", nullable(string))])))])
        func flag(_ name: String) -> JSONValue { ok(object([(name, boolean)], required: [name])) }
        return [
            ("/api/shards/matchmaker/enqueue", ["post": op("matchmakerEnqueue", "wait for a group (the player is you; again while waiting: unchanged)",
                                                           access: .user, tags: tags, body: body(criteria, required: false),
                                                           responses: [("200", ok(status))], errors: ["409", "503"])]),
            ("/api/shards/matchmaker/status", ["get": op("matchmakerStatus", "your place in the queue, or the shard you were matched into",
                                                         access: .user, tags: tags, responses: [("200", ok(status))])]),
            ("/api/shards/matchmaker/dequeue", ["post": op("matchmakerDequeue", "leave the queue", access: .user, tags: tags,
                                                           responses: [("200", flag("dequeued"))])]),
            ("/api/shards/matchmaker/ack", ["post": op("matchmakerAck", "forget your assignment (you have joined its shard)", access: .user,
                                                       tags: tags, responses: [("200", flag("acked"))])]),
        ]
    }()
}
