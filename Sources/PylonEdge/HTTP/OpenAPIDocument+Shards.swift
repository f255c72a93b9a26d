import PylonJSON
import PylonServices

/// The shard routes (`ShardRoutes`), described when a plugin serves `pylon.shard.sim/1`.
extension OpenAPIDocument {
    static let shardPaths: [(String, JSONValue)] = {
        let tags = ["shards"]
        let settings: [(String, JSONValue)] = [
            ("tick_rate_hz", ["type": "integer", "minimum": 0, "maximum": 1000]),
            ("max_subscribers", ["type": "integer", "minimum": 0]),
            ("idle_ticks_before_shutdown", ["type": "integer", "minimum": 0]),
            ("max_input_queue", ["type": "integer", "minimum": 1]),
            ("persist_every_ticks", ["type": "integer", "minimum": 0]),
        ]
        // `players`: the shard's roster (a matched shard's group, or the `players` it was created with).
        let shard = object([("id", string), ("sim", string), ("running", boolean), ("tick", count), ("subscribers", count),
                            ("input_queue", count)] + settings + [("players", ["type": "array", "items": string])],
                           required: ["id", "sim", "running", "tick", "subscribers", "input_queue"])
        let players: JSONValue = ["type": "array", "items": string, "minItems": 1, "maxItems": .int(Int64(ShardRoster.maxPlayers)), "uniqueItems": true]
        let create = object([("sim", string), ("id", nullable(string)), ("config", ["type": "object"]), ("players", players)] + settings,
                            required: ["sim"])
        let input = object([("input", anyValue), ("client_seq", nullable(count)), ("subscriber_id", nullable(string))], required: ["input"])
        let createSummary = "start a shard of a loaded sim (`config` goes to the sim; `players`, user ids, admits only them and the admin: "
            + "400 INVALID_PLAYERS unless 1 to \(ShardRoster.maxPlayers) distinct ids)"
        let id = pathParam("id")
        // The roster rule (`ShardRoster`): the 404 and 403 below are the common error responses.
        let matched = "A shard with players (a matched one, or one created with `players`) exists only for them and the admin: anyone else gets 404 SHARD_NOT_FOUND, as for a missing shard."
        let asSelf = "A player acts only as itself: another sid is 403 SID_NOT_YOURS."
        let stream: JSONValue = .object([
            ("description", "text/event-stream: `id: <tick>` + `data: <snapshot JSON>` per frame, after `event: ack` / `event: error` for this subscriber's inputs; `event: end` {reason} closes it"),
            ("content", .object([("text/event-stream", ["schema": string])])),
        ])
        return [
            ("/api/shards", [
                "post": op("createShard", createSummary, access: .admin, tags: tags,
                           body: body(create), responses: [("201", ok(shard, "started"))], errors: ["409", "503"]),
                "get": op("listShards", "every running shard", access: .admin, tags: tags, responses: [("200", ok(["type": "array", "items": shard]))]),
            ]),
            ("/api/shards/{id}", [
                "get": op("getShard", "one shard. " + matched, access: .user, tags: tags, parameters: [id], responses: [("200", ok(shard))]),
                "delete": op("deleteShard", "stop and remove a shard", access: .admin, tags: tags, parameters: [id],
                             responses: [("200", ok(object([("deleted", boolean), ("id", string)], required: ["deleted", "id"])))]),
            ]),
            ("/api/shards/{id}/input", ["post": op("shardInput", "queue an input for the next tick, as a subscriber you attached (default: your user id). " + matched + " " + asSelf,
                                                   access: .user, tags: tags, parameters: [id], body: body(input),
                                                   responses: [("200", ok(object([("accepted", boolean), ("seq", count)], required: ["accepted", "seq"])))],
                                                   errors: ["410"])]),
            ("/api/shards/{id}/connect", ["get": op("connectShard", "the shard's frames for one subscriber as server-sent events. " + matched + " " + asSelf,
                                                    access: .user, tags: tags,
                                                    parameters: [id, query("sid", string, "the subscriber id (default: your user id)"),
                                                                 query("token", string, "the session token, for EventSource")],
                                                    responses: [("200", stream)], errors: ["410"])]),
        ]
    }()
}
