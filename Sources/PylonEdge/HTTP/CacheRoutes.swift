import Foundation
import Hummingbird
import PylonCore
import PylonServices
import PylonJSON

/// Pylon's cache and pub/sub HTTP API (pylon-aux.md §3.2, §3.4), served through the cache
/// plugin (`pylon.cache/1`), admin-only as in Pylon:
///
/// - `POST /api/cache` `{"cmd", "key", ...}` → `{"ok":true,"result":…}`; a Redis error
///   → 400 `{"ok":false,"error":{"code","message"}}` (codes `CACHE_WRONGTYPE`,
///   `CACHE_ERROR`, `CACHE_OOM`, `UNKNOWN_CACHE_COMMAND`, `MISSING_FIELD`).
/// - `GET /api/cache/:key` → `{"ok":true,"result"}` or 404; `DELETE /api/cache/:key` →
///   `{"ok":true}` or 404 `{"ok":false}`.
/// - `POST /api/pubsub/publish` `{"channel","message"}` → `{"ok":true,"subscribers":n}`
///   (n = RESP subscribers that received it; WebSocket clients get it as a `topic` frame).
/// - `GET /api/pubsub/channels`, `GET /api/pubsub/history/:channel?limit=`.
extension RouteContext {
    func addCacheRoutes(_ router: Router<PylonRequestContext>, _ cache: CacheService) {
        router.post("/api/cache") { req, _ in
            try await requireAdmin(req, "the cache API")
            let b = try await body(req)
            guard let cmd = b["cmd"]?.stringValue?.uppercased(), !cmd.isEmpty else {
                throw HostError.badRequest("MISSING_FIELD", "body must be {\"cmd\": \"SET\", \"key\": ..., ...}")
            }
            let args = try CacheCommandMapping.arguments(cmd, b)
            let reply = try await cache.run(args)
            return try Self.cacheResult(reply, cmd: cmd)
        }
        router.get("/api/cache/:key") { req, ctx in
            try await requireAdmin(req, "the cache API")
            let key = try ctx.parameters.require("key")
            let reply = try await cache.run(["GET", key])
            if reply == .null { throw HostError.notFound("cache key \"\(key)\" not found") }
            return try Self.cacheResult(reply, cmd: "GET")
        }
        router.delete("/api/cache/:key") { req, ctx in
            try await requireAdmin(req, "the cache API")
            let key = try ctx.parameters.require("key")
            let reply = try await cache.run(["DEL", key])
            let deleted = reply == .integer(1)
            return HTTPSupport.json(.object([("ok", .bool(deleted))]), status: deleted ? .ok : .notFound)
        }
        router.post("/api/pubsub/publish") { req, _ in
            try await requireAdmin(req, "the pub/sub API")
            let b = try await body(req)
            guard let channel = b["channel"]?.stringValue, !channel.isEmpty else {
                throw HostError.badRequest("MISSING_CHANNEL", "body must be {\"channel\": \"...\", \"message\": \"...\"}")
            }
            guard let message = b["message"].map(CacheCommandMapping.text), b["message"] != .null else {
                throw HostError.badRequest("MISSING_MESSAGE", "body must be {\"channel\": \"...\", \"message\": \"...\"}")
            }
            let reply = try await cache.run(["PUBLISH", channel, message])
            guard case let .integer(n) = reply else { return try Self.cacheResult(reply, cmd: "PUBLISH") }
            return HTTPSupport.json(.object([("ok", true), ("subscribers", .int(n))]))
        }
        router.get("/api/pubsub/channels") { req, _ in
            try await requireAdmin(req, "the pub/sub API")
            guard case let .array(names) = try await cache.run(["PUBSUB", "CHANNELS"]) else {
                throw HostError(status: 502, code: "CACHE_BAD_REPLY", message: "PUBSUB CHANNELS did not answer an array")
            }
            let channels = names.compactMap(\.text).sorted()
            var counts: [RESPValue] = []
            if !channels.isEmpty, case let .array(c) = try await cache.run(["PUBSUB", "NUMSUB"] + channels) { counts = c }
            var result: [JSONValue] = []
            for (i, ch) in channels.enumerated() {
                var n: Int64 = 0
                if 2 * i + 1 < counts.count, case let .integer(v) = counts[2 * i + 1] { n = v }
                result.append(.object([("channel", .string(ch)), ("subscribers", .int(n))]))
            }
            return HTTPSupport.json(.object([("ok", true), ("result", .array(result))]))
        }
        router.get("/api/pubsub/history/:channel") { req, ctx in
            try await requireAdmin(req, "the pub/sub API")
            let channel = try ctx.parameters.require("channel")
            let limit = Int(min(try Self.intParam(req, "limit") ?? 50, 1000))
            let items: [JSONValue] = cache.history(channel, limit: limit).map {
                .object([("channel", .string($0.channel)), ("message", .string($0.message)), ("timestamp", .string($0.timestamp))])
            }
            return HTTPSupport.json(.object([("ok", true), ("result", .array(items))]))
        }
    }

    /// `{"ok":true,"result":…}`, or the Redis error as a 400 — except a value over the
    /// plugin's bulk limit (`max_bulk_bytes`), refused with the RESP side's text, which is a
    /// 413 `CACHE_VALUE_TOO_LARGE`.
    static func cacheResult(_ reply: RESPValue, cmd: String) throws -> Response {
        if case let .error(text) = reply, text.hasPrefix(Self.bulkLimitError) {
            return HTTPSupport.json(.object([("ok", false), ("error", .object([("code", .string("CACHE_VALUE_TOO_LARGE")), ("message", .string(text))]))]),
                                    status: .contentTooLarge)
        }
        if case let .error(text) = reply {
            let prefix = text.split(separator: " ", maxSplits: 1).first.map(String.init) ?? "ERR"
            let code = switch prefix {
            case "ERR": "CACHE_ERROR"
            case "WRONGTYPE": "CACHE_WRONGTYPE"
            case "OOM": "CACHE_OOM"
            default: "CACHE_" + prefix.uppercased()
            }
            let body: JSONValue = .object([("ok", false), ("error", .object([("code", .string(code)), ("message", .string(text))]))])
            return HTTPSupport.json(body, status: .badRequest)
        }
        return HTTPSupport.json(.object([("ok", true), ("result", CacheCommandMapping.result(cmd, reply))]))
    }
}

extension RouteContext {
    /// How a cache plugin refuses an argument over its bulk limit (Redis' text, which
    /// CacheRESP answers on RESP and to the host alike).
    static let bulkLimitError = "ERR Protocol error: invalid bulk length"
}

/// How Pylon's JSON cache commands map to Redis commands and back.
enum CacheCommandMapping {
    /// A JSON value as a command argument: strings as they are, anything else as JSON.
    static func text(_ v: JSONValue) -> String {
        if case let .string(s) = v { return s }
        return JSONWriter.string(v)
    }

    static func arguments(_ cmd: String, _ b: JSONValue) throws(HostError) -> [String] {
        func need(_ field: String) throws(HostError) -> String {
            guard let v = b[field], v != .null else {
                throw HostError.badRequest("MISSING_FIELD", "cache command \(cmd) needs \"\(field)\"")
            }
            return text(v)
        }
        func opt(_ field: String, _ fallback: String) -> String {
            guard let v = b[field], v != .null else { return fallback }
            return text(v)
        }
        switch cmd {
        case "SET":
            var a = ["SET", try need("key"), try need("value")]
            if let ttl = b["ttl"], ttl != .null { a += ["EX", text(ttl)] }
            return a
        case "GET", "DEL", "EXISTS", "INCR", "DECR", "LPOP", "RPOP", "LLEN", "SMEMBERS", "SCARD", "HGETALL", "HLEN",
             "HKEYS", "ZCARD", "TTL", "PERSIST", "TYPE":
            return [cmd, try need("key")]
        case "INCRBY": return ["INCRBY", try need("key"), opt("amount", "1")]
        case "SETNX", "GETSET", "LPUSH", "RPUSH": return [cmd, try need("key"), try need("value")]
        case "MGET":
            guard case let .array(keys)? = b["keys"], !keys.isEmpty else {
                throw HostError.badRequest("MISSING_FIELD", "cache command MGET needs \"keys\": [...]")
            }
            return ["MGET"] + keys.map(text)
        case "MSET":
            guard case let .object(pairs)? = b["pairs"], !pairs.isEmpty else {
                throw HostError.badRequest("MISSING_FIELD", "cache command MSET needs \"pairs\": {...}")
            }
            return ["MSET"] + pairs.flatMap { [$0.0, text($0.1)] }
        case "LRANGE": return ["LRANGE", try need("key"), opt("start", "0"), opt("stop", "-1")]
        case "SADD", "SREM", "SISMEMBER", "ZREM", "ZSCORE", "ZRANK": return [cmd, try need("key"), try need("member")]
        case "SINTER", "SUNION": return [cmd, try need("key"), try need("key2")]
        case "HSET": return ["HSET", try need("key"), try need("field"), try need("value")]
        case "HGET", "HDEL", "HEXISTS": return [cmd, try need("key"), try need("field")]
        case "HINCRBY": return ["HINCRBY", try need("key"), try need("field"), opt("amount", "1")]
        case "ZADD": return ["ZADD", try need("key"), try need("score"), try need("member")]
        case "ZRANGE": return ["ZRANGE", try need("key"), opt("start", "0"), opt("stop", "10"), "WITHSCORES"]
        case "KEYS": return ["KEYS", opt("pattern", "*")]
        case "EXPIRE": return ["EXPIRE", try need("key"), try need("seconds")]
        case "DBSIZE", "FLUSHALL", "INFO": return [cmd]
        case "CLEANUP": return ["PYLON.CLEANUP"]
        default:
            throw HostError.badRequest("UNKNOWN_CACHE_COMMAND", "Unknown cache command \(cmd)")
        }
    }

    /// Pylon's result shapes: predicates are booleans, ZRANGE is `[{"member","score"}]`,
    /// INFO is an object of its fields; everything else is the reply as JSON.
    static func result(_ cmd: String, _ reply: RESPValue) -> JSONValue {
        switch (cmd, reply) {
        case let ("DEL", .integer(n)), let ("EXISTS", .integer(n)), let ("SETNX", .integer(n)),
             let ("SISMEMBER", .integer(n)), let ("HEXISTS", .integer(n)), let ("EXPIRE", .integer(n)),
             let ("PERSIST", .integer(n)), let ("SREM", .integer(n)), let ("ZREM", .integer(n)), let ("HDEL", .integer(n)):
            return .bool(n > 0)
        case let ("ZRANGE", .array(items)):
            return .array(items.map { pair in
                if case let .array(p) = pair, p.count == 2 { return .object([("member", p[0].json), ("score", p[1].json)]) }
                return pair.json
            })
        case let ("INFO", .bulk(text)):
            var fields: [(String, JSONValue)] = []
            for line in String(decoding: text, as: UTF8.self).split(whereSeparator: { $0.isNewline }) where !line.hasPrefix("#") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let k = String(line[..<colon]), v = String(line[line.index(after: colon)...])
                fields.append((k, Int64(v).map { .int($0) } ?? .string(v)))
            }
            return .object(fields)
        default:
            return reply.json
        }
    }
}
