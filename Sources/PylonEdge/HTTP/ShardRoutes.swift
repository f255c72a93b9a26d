import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PylonCore
import PylonServices
import PylonJSON

/// Shards over HTTP (pylon-aux.md §5.5, wire shapes kept, Pylon's gaps filled):
///
/// - `POST /api/shards` (admin) `{"sim", "id"?, "config"?, "players"?, "tick_rate_hz"?,
///   "max_subscribers"?, "idle_ticks_before_shutdown"?, "max_input_queue"?,
///   "persist_every_ticks"?}`: starts a shard of a loaded sim; 201 with the shard. `config`
///   goes to the sim's `create`; `players` (user ids) gives the shard a roster.
/// - `GET /api/shards` (admin): every shard. `GET /api/shards/:id` (signed in): one.
/// - `DELETE /api/shards/:id` (admin): stops and removes it.
/// - `POST /api/shards/:id/input` (signed in) `{"input", "client_seq"?, "subscriber_id"?}`:
///   queued for the next tick, 200 `{"accepted": true, "seq"}`. The subscriber defaults to
///   the caller's user id, and a caller may only send as a subscriber it attached (the
///   admin as any attached one). The outcome comes with that subscriber's next frame: an
///   `ack` event, or an `error` event when the sim refused the input.
/// - `GET /api/shards/:id/connect?sid=` (signed in; `?token=` for EventSource): the SSE
///   stream. Each frame is `id: <tick>` + `data: <snapshot JSON>`, preceded by the `ack` /
///   `error` events of that subscriber's inputs applied in that tick; a slow reader gets
///   only the newest snapshot. `: heartbeat` comments keep it open; `event: end` with
///   `{"reason"}` closes it (the shard stopped, another connection took the sid, or the
///   caller's session ended: rechecked at each heartbeat).
///
/// A shard with a roster (`ShardRoster`: a matched shard, or one created with `players`)
/// exists only for its players and the admin: to anyone else `GET`, `input` and `connect` answer 404 `SHARD_NOT_FOUND`, as
/// for a missing shard; a player acting under another subscriber id gets 403 `SID_NOT_YOURS`.
/// Both checks come before the sim's own `authorize_subscribe` / `authorize_input`.
extension RouteContext {
    func addShardRoutes(_ router: Router<PylonRequestContext>, _ shards: ShardRegistry) {
        addMatchmakerRoutes(router, shards.matchmaker)
        router.post("/api/shards") { req, _ -> Response in
            try await requireAdmin(req, "creating a shard")
            let body = try await self.body(req)
            guard body.objectValue != nil else { throw HostError.badRequest("INVALID_BODY", #"send {"sim": name, "id"?, "config"?, "players"?}"#) }
            guard let sim = body["sim"]?.stringValue else {
                throw HostError.badRequest("SIM_REQUIRED", "name the sim to run in \"sim\"; loaded sims: \(shards.sims.keys.sorted().joined(separator: ", "))")
            }
            var id: String?
            if let v = body["id"], v != .null {
                guard let s = v.stringValue else { throw HostError.badRequest("INVALID_SHARD_ID", "\"id\" must be a string") }
                id = s
            }
            let config = body["config"] ?? .null
            guard config == .null || config.objectValue != nil else {
                throw HostError.badRequest("INVALID_SHARD_CONFIG", "\"config\" must be an object (the sim's own settings)")
            }
            let settings = try ShardSettings.parse(body)
            let roster = try ShardRoster.requested(in: body)
            let shard = try await shards.create(sim: sim, id: id, config: config == .null ? .object([]) : config, settings: settings,
                                                roster: roster)
            return HTTPSupport.json(shard.json, status: .created)
        }
        router.get("/api/shards") { req, _ -> Response in
            try await requireAdmin(req, "listing shards")
            return HTTPSupport.json(.array(shards.all.map(\.json)))
        }
        router.get("/api/shards/:id") { req, ctx -> Response in
            let auth = try await signedIn(req, "reading a shard")
            return HTTPSupport.json(try Self.shard(shards, ctx, auth).json)
        }
        router.delete("/api/shards/:id") { req, ctx -> Response in
            try await requireAdmin(req, "deleting a shard")
            let id = ctx.parameters.get("id") ?? ""
            guard shards.delete(id) else { throw ShardRegistry.notFound(id) }
            return HTTPSupport.json(.object([("deleted", .bool(true)), ("id", .string(id))]))
        }
        router.post("/api/shards/:id/input") { req, ctx -> Response in
            let auth = try await signedIn(req, "sending input")
            let shard = try Self.shard(shards, ctx, auth)
            let body = try await self.body(req)
            let (input, clientSeq) = try Self.inputMessage(body)
            let given = body["subscriber_id"] ?? .null
            guard given == .null || given.stringValue != nil else { throw HostError.badRequest("INVALID_SID", "subscriber_id must be a string") }
            let sid = try Self.subscriberID(given.stringValue, auth)
            try shard.check(subscriber: sid, for: auth)
            guard shard.attached(sid, by: auth) else {
                throw HostError(status: 403, code: "UNAUTHORIZED",
                                message: "send input as a subscriber you attached: connect to /api/shards/\(shard.id)/connect as \(sid) first")
            }
            let seq = try shard.push(sid: sid, input: JSONWriter.encode(input), auth: auth, clientSeq: clientSeq)
            return HTTPSupport.json(.object([("accepted", .bool(true)), ("seq", .int(Int64(clamping: seq)))]))
        }
        router.get("/api/shards/:id/connect") { req, ctx -> Response in
            // The session cookie counts only from the app's pages: from another site's link it
            // would take the visitor's place in the shard (`CSRFGuard.admitsCookieOnGet`).
            let byCookie = Self.credential(req.headers, cookie: config.sessionCookie)?.fromCookie == true
            let pageToken = byCookie && !cookiePages.admitsCookieOnGet(req.headers, authority: req.head.authority) ? nil : callerToken(req)
            let token = pageToken ?? req.uri.queryParameters.get("token").map { String($0) }
            let auth = try await authFor(token: token)
            guard auth.isAdmin || auth.userID != nil else {
                throw HostError(status: 401, code: "AUTH_REQUIRED", message: "the shard stream needs a session: send Authorization: Bearer <token> or ?token=")
            }
            let shard = try Self.shard(shards, ctx, auth)
            let sid = try Self.subscriberID(req.uri.queryParameters.get("sid").map { String($0) }, auth)
            try shard.check(subscriber: sid, for: auth)
            let sub = try await shard.subscribe(sid: sid, auth: auth).get()
            let keepalive = realtime.keepaliveSeconds
            let body = ResponseBody { writer in
                let out = EventStreamWriterBox(writer)
                defer { shard.unsubscribe(sub) }
                try await out.write(": connected\n\n")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await Self.send(sub, to: out) }
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: .seconds(keepalive))
                            // A stream lives as long as its caller's session or key.
                            guard await stillSignedIn(token: token, as: auth) else {
                                sub.end("session_ended")
                                return
                            }
                            sub.poke()
                        }
                    }
                    _ = try await group.next()
                    group.cancelAll()
                }
                try await out.finish()
            }
            return Response(status: .ok, headers: [
                .contentType: "text/event-stream", .cacheControl: "no-cache", .connection: "keep-alive",
            ], body: body)
        }
    }

    /// Writes `sub`'s deliveries as SSE until its subscription ends.
    static func send(_ sub: ShardSubscriber, to out: EventStreamWriterBox) async throws {
        while true {
            switch await sub.next() {
            case .heartbeat:
                try await out.write(": heartbeat\n\n")
            case let .ended(reason):
                try await out.write("event: end\ndata: \(JSONWriter.string(.object([("reason", .string(reason))])))\n\n")
                return
            case let .frame(notes, tick, snapshot):
                var buf = ByteBufferAllocator().buffer(capacity: snapshot.count + 64 + notes.count * 96)
                for n in notes {
                    if case .ack = n { buf.writeString("event: ack\n") } else { buf.writeString("event: error\n") }
                    buf.writeString("data: \(JSONWriter.string(n.json))\n\n")
                }
                buf.writeString("id: \(tick)\n")
                // A JSON document's line breaks are whitespace: each line is one `data:` line.
                for line in snapshot.split(omittingEmptySubsequences: true, whereSeparator: { $0 == 10 || $0 == 13 }) {
                    buf.writeString("data: ")
                    buf.writeBytes(line)
                    buf.writeString("\n")
                }
                buf.writeString("\n")
                try await out.write(buf)
            }
        }
    }

    /// Whether `token` still stands for `auth` (its session or API key was not revoked and
    /// has not expired); checked at each keepalive of a shard stream.
    func stillSignedIn(token: String?, as auth: AuthContext) async -> Bool {
        guard let now = try? await authFor(token: token) else { return false }
        return now.isAdmin == auth.isAdmin && now.userID == auth.userID
    }

    /// The caller, who must be signed in (or the admin).
    private func signedIn(_ req: Request, _ what: String) async throws -> AuthContext {
        let auth = try await auth(req)
        guard auth.isAdmin || auth.userID != nil else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "\(what) needs a session: send Authorization: Bearer <token>")
        }
        return auth
    }

    /// The input and the client's seq of an input message: the body of the input route, or
    /// a frame of the shard WebSocket (`ShardTransportHost`).
    static func inputMessage(_ body: JSONValue) throws(HostError) -> (input: JSONValue, clientSeq: UInt64?) {
        guard let input = body["input"] else { throw HostError.badRequest("INPUT_REQUIRED", #"send {"input": <the sim's input>, "client_seq"?}"#) }
        var clientSeq: UInt64?
        if let v = body["client_seq"], v != .null {
            guard let n = v.intValue, n >= 0 else { throw HostError.badRequest("INVALID_CLIENT_SEQ", "client_seq must be a non-negative integer") }
            clientSeq = UInt64(n)
        }
        return (input, clientSeq)
    }

    /// The subscriber id a request acts as: the one given, else the caller's user id.
    static func subscriberID(_ given: String?, _ auth: AuthContext) throws(HostError) -> String {
        guard let sid = given ?? auth.userID else {
            throw HostError.badRequest("SID_REQUIRED", "name the subscriber with ?sid= (or subscriber_id); the admin has no user id to default to")
        }
        guard ShardNames.valid(sid) else {
            throw HostError.badRequest("INVALID_SID", "a subscriber id is 1..128 of letters, digits, '_', '-', '.', ':' and '@'")
        }
        return sid
    }

    /// The shard of the route's `:id` as `auth` may see it (`ShardRegistry.get(_:for:)`: a
    /// shard with a roster of which the caller is no player is not found).
    static func shard(_ shards: ShardRegistry, _ ctx: PylonRequestContext, _ auth: AuthContext) throws(HostError) -> Shard {
        try shards.get(ctx.parameters.get("id") ?? "", for: auth)
    }
}
