import Foundation
import PylonCore
import PylonJSON
import PylonPluginABI
import PylonServices

/// The host's side of `pylon.host.shards/1` (ABI 2.6): what a shard transport plugin
/// (Plugins/ShardWS) calls. It keeps the rules of the SSE stream and the input route
/// (`ShardRoutes`) — who the token is, who may subscribe as which subscriber (on a shard
/// with a roster its players only, each as itself: `ShardRoster`), the input
/// message and its checks, the stream ending with the caller's session — so a client gets
/// the same answers over either transport. The plugin only carries bytes.
///
/// Handles cross the boundary retained (`Unmanaged`): a `Caller` from `authenticate` until
/// `release_caller`, a `Subscription` from `subscribe` until `unsubscribe`.
/// Threads: any; every call returns without waiting (lookups run in tasks).
final class ShardTransportHost: @unchecked Sendable {
    let routes: RouteContext
    let shards: ShardRegistry
    let table: UnsafeMutablePointer<pylon_host_shards_v1>

    /// Who a token stands for, and the token (its session is rechecked while subscribed).
    final class Caller: Sendable {
        let auth: AuthContext
        let token: String?
        init(auth: AuthContext, token: String?) {
            self.auth = auth
            self.token = token
        }
    }

    /// The plugin's wakeup: a C function and its context.
    struct Wake: @unchecked Sendable {
        let fn: @convention(c) (UnsafeMutableRawPointer?) -> Void
        let ctx: UnsafeMutableRawPointer?
    }

    /// One subscription. `wake` is called under `lock`, so once `unsubscribe` has cleared it
    /// no call is running or will run (the ABI's promise).
    final class Subscription: @unchecked Sendable {
        let shard: Shard
        let caller: Caller
        var sub: ShardSubscriber?
        var watcher: Task<Void, Never>?
        private let lock = NSLock()
        private var wake: Wake?

        init(shard: Shard, caller: Caller, wake: Wake) {
            self.shard = shard
            self.caller = caller
            self.wake = wake
        }

        func fire() { lock.withLock { if let w = wake { w.fn(w.ctx) } } }
        func disarm() { lock.withLock { wake = nil } }
    }

    init(routes: RouteContext, shards: ShardRegistry) {
        self.routes = routes
        self.shards = shards
        table = .allocate(capacity: 1)
        table.initialize(to: pylon_host_shards_v1())
        table.pointee.struct_size = UInt32(MemoryLayout<pylon_host_shards_v1>.size)
        table.pointee.ctx = Unmanaged.passUnretained(self).toOpaque()
        table.pointee.authenticate = { ctx, token, tokenLen, peer, peerLen, done, doneCtx in
            guard let done else { return }
            let me = ShardTransportHost.from(ctx)
            me.authenticate(token: ShardTransportHost.text(token, tokenLen), peer: ShardTransportHost.text(peer, peerLen), done: done, doneCtx: doneCtx)
        }
        table.pointee.release_caller = { _, caller in
            if let caller { Unmanaged<Caller>.fromOpaque(UnsafeRawPointer(caller)).release() }
        }
        table.pointee.subscribe = { ctx, caller, shard, shardLen, sid, sidLen, wake, wakeCtx, done, doneCtx in
            guard let done, let caller, let wake else { return }
            let me = ShardTransportHost.from(ctx)
            let c = Unmanaged<Caller>.fromOpaque(UnsafeRawPointer(caller)).takeUnretainedValue()
            me.subscribe(c, shardID: ShardTransportHost.text(shard, shardLen), sid: ShardTransportHost.text(sid, sidLen), wake: Wake(fn: wake, ctx: wakeCtx),
                         done: done, doneCtx: doneCtx)
        }
        table.pointee.next = { _, sub, out, outCtx in
            guard let sub, let out else { return 0 }
            return ShardTransportHost.next(ShardTransportHost.subscription(sub), out: out, outCtx: outCtx)
        }
        table.pointee.input = { _, sub, message, len, reply, replyCtx in
            guard let sub else { return PYLON_ERR_INVALID_ARGUMENT }
            let bytes = message.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
            return ShardTransportHost.input(ShardTransportHost.subscription(sub), bytes, reply: reply, replyCtx: replyCtx)
        }
        table.pointee.unsubscribe = { _, sub in
            guard let sub else { return }
            let s = Unmanaged<Subscription>.fromOpaque(UnsafeRawPointer(sub)).takeRetainedValue()
            s.disarm()
            s.watcher?.cancel()
            if let inner = s.sub { s.shard.unsubscribe(inner) }
        }
    }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> ShardTransportHost {
        Unmanaged<ShardTransportHost>.fromOpaque(ctx!).takeUnretainedValue()
    }

    static func subscription(_ p: OpaquePointer) -> Subscription {
        Unmanaged<Subscription>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }

    static func text(_ p: UnsafePointer<CChar>?, _ len: Int) -> String {
        guard let p, len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
    }

    // MARK: Authenticate

    /// The caller a handshake's token stands for, with the wrong-API-key limiter applied as
    /// on the HTTP WebSocket handshake (`webSocketCaller`).
    private func authenticate(token: String, peer: String, done: pylon_shard_auth_fn, doneCtx: UnsafeMutableRawPointer?) {
        let cb = Completion(fn: done, ctx: doneCtx)
        let token: String? = token.isEmpty ? nil : token
        let client = ClientAddress.parse(Substring(peer)) ?? .unknown
        Task { [routes] in
            do {
                if let token, let refusal = routes.keyGuesses.refusal(token: token, client: client) { throw refusal }
                let auth: AuthContext
                do {
                    auth = try await routes.authFor(token: token)
                } catch let error as HostError where error.code == ApiKeyGuesses.invalidCode {
                    if let token { routes.keyGuesses.failed(token: token, client: client) }
                    throw error
                }
                let caller = Unmanaged.passRetained(Caller(auth: auth, token: token)).toOpaque()
                cb.fn(cb.ctx, PYLON_OK, OpaquePointer(caller), nil)
            } catch {
                let e = error as? HostError ?? HostError(status: 500, code: "AUTH_FAILED", message: "the token could not be checked: \(error)")
                e.withPluginError(Self.status(e)) { cb.fn(cb.ctx, Self.status(e), nil, $0) }
            }
        }
    }

    struct Completion<F>: @unchecked Sendable {
        let fn: F
        let ctx: UnsafeMutableRawPointer?
    }

    // MARK: Subscribe

    private func subscribe(_ caller: Caller, shardID: String, sid: String, wake: Wake,
                           done: pylon_shard_subscribed_fn, doneCtx: UnsafeMutableRawPointer?) {
        let cb = Completion(fn: done, ctx: doneCtx)
        let fail: @Sendable (HostError) -> Void = { e in e.withPluginError(Self.status(e)) { cb.fn(cb.ctx, Self.status(e), nil, $0) } }
        let auth = caller.auth
        guard auth.isAdmin || auth.userID != nil else {
            return fail(HostError(status: 401, code: "AUTH_REQUIRED", message: "the shard stream needs a session: send Authorization: Bearer <token> or the subprotocol bearer.<token>"))
        }
        let shard: Shard, subscriberID: String
        do {
            // A shard with a roster of which the caller is no player: 4404, as for no shard at all.
            shard = try shards.get(shardID, for: auth)
            subscriberID = try RouteContext.subscriberID(sid.isEmpty ? nil : sid, auth)
            try shard.check(subscriber: subscriberID, for: auth)
        } catch {
            return fail(error)
        }
        let box = Subscription(shard: shard, caller: caller, wake: wake)
        Task { [routes] in
            switch await shard.subscribe(sid: subscriberID, auth: auth) {
            case let .failure(e):
                box.disarm()
                fail(e)
            case let .success(sub):
                box.sub = sub
                box.watcher = Task { await Self.watchSession(routes, box.caller, sub) }
                cb.fn(cb.ctx, PYLON_OK, OpaquePointer(Unmanaged.passRetained(box).toOpaque()), nil)
            }
        }
    }

    /// A subscription lives as long as its caller's session or key, as the SSE stream does:
    /// rechecked every keepalive interval until the subscription ends.
    static func watchSession(_ routes: RouteContext, _ caller: Caller, _ sub: ShardSubscriber) async {
        while !Task.isCancelled && !sub.isEnded {
            do { try await Task.sleep(for: .seconds(routes.realtime.keepaliveSeconds)) } catch { return }
            guard await routes.stillSignedIn(token: caller.token, as: caller.auth) else {
                sub.end("session_ended")
                return
            }
        }
    }

    // MARK: Frames and inputs

    private static func next(_ box: Subscription, out: pylon_shard_delivery_fn, outCtx: UnsafeMutableRawPointer?) -> Int32 {
        guard let sub = box.sub else { return 0 }
        while true {
            guard let d = sub.poll(orWake: { [weak box] in box?.fire() }) else { return 0 }
            switch d {
            case .heartbeat:
                continue
            case let .ended(reason):
                var r = reason
                r.withUTF8 { rb in
                    rb.withMemoryRebound(to: CChar.self) { rc in
                        var d = pylon_shard_delivery()
                        d.struct_size = UInt32(MemoryLayout<pylon_shard_delivery>.size)
                        d.kind = PYLON_SHARD_DELIVERY_ENDED
                        d.reason = pylon_str(ptr: rc.baseAddress, len: rc.count)
                        withUnsafePointer(to: &d) { out(outCtx, $0) }
                    }
                }
                return 1
            case let .frame(notes, tick, snapshot):
                let lines = notes.map { JSONWriter.string(noteFrame($0)) }.joined(separator: "\n")
                let dropped = UInt64(sub.dropped)
                var text = lines
                text.withUTF8 { nb in
                    nb.withMemoryRebound(to: CChar.self) { nc in
                        snapshot.withUnsafeBufferPointer { sb in
                            sb.withMemoryRebound(to: CChar.self) { sc in
                                var d = pylon_shard_delivery()
                                d.struct_size = UInt32(MemoryLayout<pylon_shard_delivery>.size)
                                d.kind = PYLON_SHARD_DELIVERY_FRAME
                                d.tick = tick
                                d.snapshot = pylon_str(ptr: sc.baseAddress, len: sc.count)
                                d.notes = pylon_str(ptr: nc.baseAddress, len: nc.count)
                                d.dropped = dropped
                                withUnsafePointer(to: &d) { out(outCtx, $0) }
                            }
                        }
                    }
                }
                return 1
            }
        }
    }

    /// A note as the WebSocket's text frame: the SSE event's data with its event name as "type".
    static func noteFrame(_ note: ShardNote) -> JSONValue {
        let type: String
        switch note {
        case .ack: type = "ack"
        case .rejected: type = "error"
        }
        return .object([("type", .string(type))] + (note.json.objectValue ?? []))
    }

    /// Queues a client's input frame as the subscription's subscriber, with the input
    /// route's checks (`ShardRoutes.inputMessage`, `Shard.attached`, `Shard.push`).
    private static func input(_ box: Subscription, _ message: [UInt8], reply: pylon_shard_reply_fn?,
                              replyCtx: UnsafeMutableRawPointer?) -> pylon_status {
        var clientSeq: UInt64?
        do {
            guard message.count <= Shard.maxInputBytes + 1024 else {
                throw HostError(status: 413, code: "INPUT_TOO_LARGE", message: "an input is at most \(Shard.maxInputBytes) bytes of JSON; send less")
            }
            let body: JSONValue
            do {
                body = try JSONParser.parse(message)
            } catch {
                throw HostError.badRequest("INVALID_JSON", #"an input frame is a JSON object {"input": <the sim's input>, "client_seq"?}"#)
            }
            let (input, seq) = try RouteContext.inputMessage(body)
            clientSeq = seq
            guard let sub = box.sub, !sub.isEnded, box.shard.attached(sub.sid, by: box.caller.auth) else {
                throw HostError(status: 410, code: "NOT_SUBSCRIBED", message: "this connection's subscription has ended; reconnect to send input")
            }
            _ = try box.shard.push(sid: sub.sid, input: JSONWriter.encode(input), auth: box.caller.auth, clientSeq: seq)
            return PYLON_OK
        } catch {
            let e = error as? HostError ?? HostError(status: 500, code: "INPUT_FAILED", message: "\(error)")
            let frame = JSONWriter.string(.object([
                ("type", .string("error")),
                ("error", .object([("code", .string(e.code)), ("message", .string(e.message))])),
                ("client_seq", clientSeq.map { .int(Int64(clamping: $0)) } ?? .null),
            ]))
            if let reply {
                var f = frame
                f.withUTF8 { b in b.withMemoryRebound(to: CChar.self) { reply(replyCtx, $0.baseAddress, $0.count) } }
            }
            return Self.status(e)
        }
    }

    /// The ABI status of a refusal, by the HTTP status the routes answer it with.
    static func status(_ e: HostError) -> pylon_status {
        switch e.status {
        case 404: PYLON_ERR_NOT_FOUND
        case 400, 413: PYLON_ERR_INVALID_ARGUMENT
        case 401, 403: PYLON_ERR_ABORTED
        case 410 where e.code == "NOT_SUBSCRIBED": PYLON_ERR_ABORTED
        case 410, 429, 503: PYLON_ERR_BUSY
        default: PYLON_ERR_GENERIC
        }
    }
}
