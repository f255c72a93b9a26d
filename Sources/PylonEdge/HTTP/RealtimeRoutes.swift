import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import PylonCore
import PylonData

extension RouteContext {
    /// The token a WebSocket handshake carries: `Authorization: Bearer`, or a
    /// `Sec-WebSocket-Protocol` entry `bearer.<percent-encoded token>` (echoed back).
    static func webSocketToken(_ request: Request) -> (token: String?, protocolEcho: String?) {
        if let h = request.headers[.authorization], h.lowercased().hasPrefix("bearer ") {
            return (String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces), nil)
        }
        if let protos = request.headers[.secWebSocketProtocol] {
            for p in protos.split(separator: ",") {
                let entry = p.trimmingCharacters(in: .whitespaces)
                if entry.hasPrefix("bearer.") {
                    let raw = String(entry.dropFirst(7)).replacingOccurrences(of: "+", with: " ")
                    return (raw.removingPercentEncoding ?? raw, entry)
                }
            }
        }
        return (nil, nil)
    }

    /// The session cookie of a WebSocket handshake from a trusted page (or the host's own);
    /// from any other page it is ignored, so the handshake is anonymous and refused.
    func handshakeCookie(_ request: Request) -> String? {
        guard cookiePages.admitsCookie(request.headers, authority: request.head.authority) else { return nil }
        return config.sessionCookie.token(inCookieHeaders: request.headers[values: .cookie]).flatMap { cookieToken($0.token) }
    }

    /// The caller a token stands for (none: anonymous; the admin token; a session token;
    /// anything else: anonymous).
    func authFor(token: String?) async throws -> AuthContext {
        if let known = authNow(token: token) { return known }
        // Only an API key, or a session token not in the cache, gets here.
        if let token, token.hasPrefix("pk.") {
            guard let apiKeys, let (key, email) = try await apiKeys.resolve(token) else {
                throw HostError(status: 401, code: "INVALID_API_KEY", message: "Bearer token is malformed, expired, or revoked")
            }
            return AuthContext(userID: key.userID, isAdmin: false, isGuest: false, roles: [], tenantID: nil,
                               apiKeyID: key.id, apiKeyScopes: key.scopes, email: email)
        }
        if let token, let jwts, SessionJWTs.looksLikeJWT(token) {
            return try await jwts.verify(token, isMember: { user, org in try await isMember(user, of: org) }).auth
        }
        guard let token, let s = try await sessions.resolve(token) else { return .anonymous }
        return AuthContext(s)
    }

    /// `authFor` when the answer is known without waiting: anonymous, the admin, or a
    /// session the session cache holds; nil when an API key or a session token must be
    /// looked up in the store.
    func authNow(token: String?) -> AuthContext? {
        guard let token, !token.isEmpty else { return .anonymous }
        if isAdminToken(token) { return .admin }
        if token.hasPrefix("pk.") || (jwts != nil && SessionJWTs.looksLikeJWT(token)) { return nil }
        guard token.hasPrefix("pylon_") else { return .anonymous }
        guard let cached = sessions.resolveCached(token) else { return nil }
        return cached.map(AuthContext.init) ?? .anonymous
    }

    /// The caller of a stream and the session behind it (nil for the admin token and for
    /// anonymous callers): the stream ends with that session. `generation` is the session
    /// cache's before the lookup (see `confirmSession`).
    func streamCaller(token: String?) async throws -> (auth: AuthContext, session: StreamSession?, generation: UInt64) {
        let generation = sessions.generation
        let auth = try await authFor(token: token)
        guard !auth.isAdmin, auth.userID != nil, let token else { return (auth, nil, generation) }
        // An API key's stream lives as long as the key: revoking it ends the stream.
        if let key = auth.apiKeyID {
            let name = SessionStore.apiKeyStream(key)
            guard let expires = try await sessions.expiries([name])[name] else { return (.anonymous, nil, generation) }
            return (auth, StreamSession(tokenHash: name, expiresAt: expires), generation)
        }
        // A JWT's stream reads as its user and lives until the token expires (a JWT cannot
        // be revoked); its name carries that expiry (`SessionStore.jwtStream`).
        if let jwts, SessionJWTs.looksLikeJWT(token) {
            // Only the expiry: `authFor` above checked the rest.
            let expires = try await jwts.verify(token, isMember: { _, _ in true }).expiresAt
            return (auth, StreamSession(tokenHash: SessionStore.jwtStream(token, expiresAt: expires), expiresAt: expires), generation)
        }
        // `authFor` just resolved it, so this is a cache hit (or one more read after a revocation).
        guard let s = try await sessions.resolve(token) else { return (.anonymous, nil, generation) }
        return (auth, StreamSession(tokenHash: SessionStore.hash(token), expiresAt: s.expiresAt, tenantID: s.tenantID), generation)
    }

    /// Closes the race between looking a session up and subscribing: a revocation or a
    /// change of the user's address processed in between found no stream to end. If any
    /// was processed since `generation`, the session is read again and the stream ended if
    /// it is gone or its user's verified address is not the one the stream reads with.
    func confirmSession(_ sub: Subscriber, since generation: UInt64) async throws {
        guard let session = sub.session, sessions.generation != generation else { return }
        let state = try await sessions.streamStates([session.tokenHash])[session.tokenHash]
        if let state, state.expiresAt == 0 || SessionStore.now() < state.expiresAt, state.email == sub.auth.email { return }
        sub.endSession()
    }

    /// Where a stream starts: `?since=`, else the `Last-Event-ID` an EventSource sends back
    /// when it reconnects (the `id:` of the last event it got); nil: neither, start live. One
    /// given but not a cursor is 400 INVALID_QUERY (as on `/api/sync/pull`), not "no cursor":
    /// read as none, the client would silently miss every change since its cursor.
    static func checkedCursorParam(_ request: Request) throws(HostError) -> Int64? {
        if let s = request.uri.queryParameters.get("since"), !s.isEmpty {
            guard let n = Int64(s), n >= 0 else {
                throw HostError.badRequest("INVALID_QUERY", "query parameter since must be a non-negative integer (a change-log cursor), got \"\(s.prefix(64))\"")
            }
            return n
        }
        guard let raw = request.headers[lastEventID] else { return nil }
        let s = raw.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { return nil }
        guard let n = Int64(s), n >= 0 else {
            throw HostError.badRequest("INVALID_QUERY", "Last-Event-ID must be a non-negative integer (the id: of an event this stream sent), got \"\(s.prefix(64))\"; "
                + "leave it out to start from now")
        }
        return n
    }

    private static let lastEventID = HTTPField.Name("Last-Event-ID")!

    /// When a subscriber's queue overflows, its sender falls back to the log. If it then
    /// delivers nothing for `stallSeconds` (the client stopped reading and the socket is
    /// full), the connection is closed: the client reconnects with its cursor.
    func armStallWatchdog(_ sub: Subscriber, channel: any Channel) {
        let seconds = Int64(realtime.stallSeconds)
        let metrics = self.metrics
        sub.onOverflow = { [weak sub] in
            guard let mark = sub?.progress else { return }
            channel.eventLoop.scheduleTask(in: .seconds(seconds)) {
                guard let sub, sub.progress == mark else { return }
                metrics.add("realtime_slow_consumers_closed_total", 1)
                channel.close(promise: nil)
            }
        }
    }

    /// Who opens a WebSocket and where its stream starts, decided before the upgrade is
    /// answered (a session token may need a store read).
    func webSocketCaller(_ request: Request, peer: SocketAddress?) async throws -> WebSocketCaller {
        let token = Self.webSocketToken(request).token ?? handshakeCookie(request)
        let client = ClientAddress.resolve(peer: peer, headers: request.headers, trustHops: config.trustProxyHops)
        // Guessing API keys through handshakes counts as through requests (`ApiKeyGuesses`).
        if let token, let refusal = keyGuesses.refusal(token: token, client: client) { throw refusal }
        let caller: (auth: AuthContext, session: StreamSession?, generation: UInt64)
        do {
            caller = try await streamCaller(token: token)
        } catch let error as HostError where error.code == ApiKeyGuesses.invalidCode {
            if let token { keyGuesses.failed(token: token, client: client) }
            throw error
        }
        // A `since` that is not a cursor is refused before the upgrade, as on SSE and pull.
        return WebSocketCaller(auth: caller.auth, session: caller.session,
                               start: .init(since: try Self.checkedCursorParam(request),
                                            epoch: request.uri.queryParameters.get("epoch").map { String($0) },
                                            generation: caller.generation))
    }

    /// Subscribes an upgrade's caller, before its 101 is sent: the client can only see the
    /// connection open once the hub queues every event published from then on (subscribing
    /// after the 101 left a window in which a commit, on this host or through the change
    /// tailer from another, went to every stream but this one). Refused: no token, or the
    /// address holds too many streams (closed with 1008 after the upgrade, as Pylon does).
    /// The caller unsubscribes a subscriber whose upgrade does not complete.
    func admitWebSocket(_ caller: WebSocketCaller, address: String) -> WebSocketAdmission {
        guard caller.auth.isAdmin || caller.auth.userID != nil else { return .refused("unauthorized: bearer token required (or the session cookie from a trusted page)") }
        do {
            let sub = try hub.subscribe(auth: caller.auth, address: address, wantsRelays: true, session: caller.session,
                                        live: caller.start.since == nil)
            return .subscribed(sub, caller.start)
        } catch {
            return .refused(error.message)
        }
    }

    /// Serves an upgraded WebSocket (on its event loop): hands its subscriber to a
    /// `WebSocketConnection`, or closes it with 1008 and the reason it was refused.
    func openWebSocket(_ admission: WebSocketAdmission, channel: any Channel, services: WebSocketServices) throws {
        let refusal: String
        switch admission {
        case let .subscribed(sub, start):
            do {
                try channel.pipeline.syncOperations.addHandler(WebSocketConnection(services: services, subscriber: sub, start: start))
            } catch {
                hub.unsubscribe(sub)
                throw error
            }
            return
        case let .refused(reason):
            refusal = reason
        }
        var data = channel.allocator.buffer(capacity: 2 + refusal.utf8.count)
        data.write(webSocketErrorCode: .policyViolation)
        data.writeString(refusal)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Adds the SSE route at `path` ("/api/sync/events" on the main port, "**" on port+2).
    func addEventStreamRoute(_ router: Router<PylonRequestContext>, path: RouterPath) {
        router.get(path) { request, ctx -> Response in
            let token = callerToken(request)
                ?? request.uri.queryParameters.get("token").map { String($0) }
            let caller = try await streamCaller(token: token)
            let auth = caller.auth
            guard auth.isAdmin || auth.userID != nil else {
                throw HostError(status: 401, code: "AUTH_REQUIRED", message: "the event stream needs a session: send Authorization: Bearer <token> or ?token=")
            }
            let since = try Self.checkedCursorParam(request)
            let sub = try hub.subscribe(auth: auth, address: ctx.addressKey, wantsRelays: false, session: caller.session,
                                        live: since == nil)
            do {
                try await confirmSession(sub, since: caller.generation)
            } catch {
                hub.unsubscribe(sub)
                throw error
            }
            let epoch = request.uri.queryParameters.get("epoch").map { String($0) }
            armStallWatchdog(sub, channel: ctx.channel)
            let keepalive = realtime.keepaliveSeconds
            let body = ResponseBody { writer in
                let sink = EventStreamSink(writer: EventStreamWriterBox(writer))
                defer { hub.unsubscribe(sub) }
                try await sink.write(": connected\n\n")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await sync.run(sub, since: since, epoch: epoch, sink: sink) }
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: .seconds(keepalive))
                            sub.poke()
                        }
                    }
                    _ = try await group.next()
                    sub.close()
                    group.cancelAll()
                }
                try await sink.finish()
            }
            return Response(status: .ok, headers: [
                .contentType: "text/event-stream", .cacheControl: "no-cache", .connection: "keep-alive",
            ], body: body)
        }
    }
}
