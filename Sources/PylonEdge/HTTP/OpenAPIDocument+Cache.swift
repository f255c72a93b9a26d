import PylonJSON

/// The cache and pub/sub routes (`CacheRoutes`), described when a plugin serves `pylon.cache/1`.
extension OpenAPIDocument {
    static let cacheResult = object([("ok", boolean), ("result", anyValue)], required: ["ok"])

    static let cachePaths: [(String, JSONValue)] = [
        ("/api/cache", ["post": op("cacheCommand", "a cache command {cmd, key, ...}", access: .admin, tags: ["cache"],
                                   body: body(object([("cmd", ["type": "string", "minLength": 1]), ("key", anyValue)], required: ["cmd"])),
                                   responses: [("200", ok(cacheResult))])]),
        ("/api/cache/{key}", [
            "parameters": [pathParam("key")],
            "get": op("cacheGet", "a string key's value", access: .admin, tags: ["cache"], responses: [("200", ok(cacheResult))]),
            "delete": op("cacheDelete", "delete a key", access: .admin, tags: ["cache"],
                         responses: [("200", ok(cacheResult)), ("404", ok(object([("ok", ["const": false])], required: ["ok"]), "no such key"))]),
        ]),
        ("/api/pubsub/publish", ["post": op("publish", "publish to a channel", access: .admin, tags: ["cache"],
                                            body: body(object([("channel", ["type": "string", "minLength": 1]), ("message", anyValue)],
                                                              required: ["channel", "message"])),
                                            responses: [("200", ok(object([("ok", boolean), ("subscribers", count)], required: ["ok"])))])]),
        ("/api/pubsub/channels", ["get": op("channels", "channels with subscriber counts", access: .admin, tags: ["cache"],
                                            responses: [("200", ok(cacheResult))])]),
        ("/api/pubsub/history/{channel}", ["get": op("history", "the last messages of a channel", access: .admin, tags: ["cache"],
                                                     parameters: [pathParam("channel"), query("limit", count, "at most this many (max 1000)")],
                                                     responses: [("200", ok(cacheResult))])]),
    ]
}
