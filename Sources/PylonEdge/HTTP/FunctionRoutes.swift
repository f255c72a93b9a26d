import Foundation
import Hummingbird
import PylonPluginABI
import PylonCore
import PylonData
import PylonServices
import PylonJSON

extension RouteContext {
    /// `/api/fn` and `/api/webhooks` (pylon-core.md §2.12) when a plugin serves
    /// `pylon.functions/1`; without one, the capability stub answers 501.
    func addFunctionRoutes(_ router: Router<PylonRequestContext>) {
        guard let functions else { return }
        router.get("/api/fn") { req, _ in
            try await requireAdmin(req, "listing functions")
            return HTTPSupport.bytes(functions.list())
        }
        router.get("/api/fn/traces") { req, _ in
            try await requireAdmin(req, "reading function traces")
            let limit = min(try Self.intParam(req, "limit") ?? Self.defaultTraceLimit, Int64(FnTraceRing.capacity))
            return HTTPSupport.json(functions.recentTraces(limit: Int(limit)))
        }
        for method in Self.webhookMethods {
            router.on(RouterPath("/api/webhooks/:name"), method: method) { req, ctx in
                try await webhook(functions, try ctx.parameters.require("name"), req)
            }
        }
        router.post("/api/fn/:name") { req, ctx in
            try await callFunction(functions, try ctx.parameters.require("name"), req)
        }
    }

    /// `POST /api/fn/NAME`: a stream with `Accept: text/event-stream`, else the JSON answer of
    /// `functionCallHandler`.
    func callFunction(_ functions: FunctionService, _ name: String, _ req: Request) async throws -> Response {
        guard Self.wantsStream(req.headers) else { return try await respond(functionCallHandler(functions, name), req, success: .ok) }
        // Passed on to the function as sent, once checked to be JSON.
        let args = try await HTTPSupport.jsonBytes(req, limit: config.maxBodyBytes, empty: Array("{}".utf8))
        let who = try await auth(req)
        _ = try functions.describe(name) // unknown → 404 JSON, not a stream
        return Self.streamCall(functions, name, args, who, maxQueued: config.syncQueueBytes)
    }

    static let defaultTraceLimit: Int64 = 50
    /// OPTIONS is answered by the CORS preflight before routing; HEAD has no body to return.
    static let webhookMethods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]

    /// `ANY /api/webhooks/NAME`: runs the action `NAME` with args `{"rawBody": body}` and
    /// `ctx.request` = the HTTP request, as the bearer token's caller (never the session
    /// cookie's); 200 with its return value, else the error as on
    /// `/api/fn` (404 FN_NOT_FOUND, 501 without Bun, 400 NOT_AN_ACTION for a query or
    /// mutation: a webhook has side effects but no transaction of its own).
    func webhook(_ functions: FunctionService, _ name: String, _ req: Request) async throws -> Response {
        let info = try functions.describe(name)
        guard info.kind == PYLON_FN_ACTION else {
            throw HostError.badRequest("NOT_AN_ACTION", "\"\(name)\" is a \(FunctionService.kindName(info.kind)); webhooks run actions only (export default action(...))")
        }
        let raw = try await HTTPSupport.rawBody(req, limit: config.maxBodyBytes)
        let body = String(decoding: raw.readableBytesView, as: UTF8.self)
        let request = Self.webhookRequest(req, rawBody: body)
        // Webhooks are called by other services, never by the app's pages: the session
        // cookie, which a browser attaches to a link or form from any site (and GET is not
        // CSRF-checked), signs nobody in here. `Authorization: Bearer` still does.
        let bearer = Self.credential(req.headers, cookie: config.sessionCookie).flatMap { $0.fromCookie ? nil : $0.token }
        let who = try await authFor(token: bearer)
        return HTTPSupport.bytes(try await functions.call(name, args: .object([("rawBody", .string(body))]), auth: who,
                                                          expecting: PYLON_FN_ACTION, request: request))
    }

    /// `{method, path (with the query string), headers, raw_body}`: header names lowercased,
    /// repeated headers joined with ", " in the order they came.
    static func webhookRequest(_ req: Request, rawBody: String) -> JSONValue {
        var headers: [(String, JSONValue)] = []
        var index: [String: Int] = [:]
        for field in req.headers {
            let name = field.name.canonicalName
            if let i = index[name], let earlier = headers[i].1.stringValue {
                headers[i].1 = .string(earlier + ", " + field.value)
            } else {
                index[name] = headers.count
                headers.append((name, .string(field.value)))
            }
        }
        let path = req.uri.path + (req.uri.query.map { "?" + $0 } ?? "")
        return .object([("method", .string(req.method.rawValue)), ("path", .string(path)),
                        ("headers", .object(headers)), ("raw_body", .string(rawBody))])
    }

    /// `Accept: text/event-stream` (Pylon's streaming path): each `ctx.stream` chunk is a
    /// `data:` event (a chunk with line breaks becomes several `data:` lines, as SSE
    /// requires; event names are dropped, as in Pylon), then `event: result` with the return
    /// value or `event: error` with `{"code","message"}`, then the response ends. At most
    /// `maxQueued` bytes wait for a client that reads slower than the function writes; past
    /// that the stream ends with `event: error` `STREAM_BACKLOG` and the rest of the
    /// function's chunks are dropped (it runs on to its end).
    static func streamCall(_ functions: FunctionService, _ name: String, _ args: [UInt8], _ who: AuthContext, maxQueued: Int) -> Response {
        let (chunks, feed) = AsyncStream<String>.makeStream()
        let backlog = StreamBacklog(limit: maxQueued)
        @Sendable func send(_ text: String) {
            guard backlog.admit(text.utf8.count) else {
                if backlog.overflowOnce() {
                    let e: JSONValue = .object([("code", "STREAM_BACKLOG"), ("message", .string("the client read the stream slower than the function wrote it; more than \(maxQueued) bytes waited (PYLON_SYNC_QUEUE_BYTES), so the stream ended"))])
                    feed.yield("event: error\n" + sseData(JSONWriter.string(e)))
                    feed.finish()
                }
                return
            }
            feed.yield(text)
        }
        let body = ResponseBody { writer in
            let out = EventStreamWriterBox(writer)
            // Not awaited: once the stream ended (its result, or STREAM_BACKLOG) the answer
            // ends, while an overflowed function runs on to its end with nowhere to write.
            Task {
                do {
                    let result = try await functions.call(name, argsJSON: args, auth: who, stream: { _, data in send(sseData(data)) })
                    send("event: result\n" + sseData(String(decoding: result, as: UTF8.self)))
                } catch {
                    let e = DataService.hostError(error)
                    send("event: error\n" + sseData(JSONWriter.string(.object([("code", .string(e.code)), ("message", .string(e.message))]))))
                }
                feed.finish()
            }
            for await chunk in chunks {
                try await out.write(chunk)
                backlog.sent(chunk.utf8.count)
            }
            try await out.finish()
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// `text` as `data:` lines, split at every line break SSE knows — CRLF, a lone CR and
    /// LF (a chunk's lone CR would otherwise end the line in the client and let the rest
    /// of the chunk read as a field of its own, e.g. a forged `event:`).
    static func sseData(_ text: String) -> String {
        var out = "data: "
        out.reserveCapacity(text.utf8.count + 16)
        var afterCR = false
        for u in text.unicodeScalars {
            if u == "\n", afterCR {
                afterCR = false
                continue
            }
            afterCR = u == "\r"
            if u == "\r" || u == "\n" {
                out += "\ndata: "
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out + "\n\n"
    }
}

/// Bytes of a streamed call's events queued for its client (`streamCall`), bounded.
private final class StreamBacklog: @unchecked Sendable {
    private let lock = NSLock()
    private let limit: Int
    private var queued = 0
    private var overflowed = false

    init(limit: Int) { self.limit = limit }

    /// Whether `n` more bytes may wait (then they count as queued). An event is always
    /// admitted when nothing waits: the bound is on a backlog, and a result or chunk larger
    /// than it on its own must reach a client that keeps up (the answer without streaming
    /// would hold it too).
    func admit(_ n: Int) -> Bool {
        lock.withLock {
            guard !overflowed, queued == 0 || queued + n <= limit else { return false }
            queued += n
            return true
        }
    }

    /// True the first time only: the stream is over its bound from now on.
    func overflowOnce() -> Bool {
        lock.withLock {
            defer { overflowed = true }
            return !overflowed
        }
    }

    func sent(_ n: Int) { lock.withLock { queued -= n } }
}
