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
        return Self.streamCall(functions, name, args, who)
    }

    static let defaultTraceLimit: Int64 = 50
    /// OPTIONS is answered by the CORS preflight before routing; HEAD has no body to return.
    static let webhookMethods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]

    /// `ANY /api/webhooks/NAME`: runs the action `NAME` with args `{"rawBody": body}` and
    /// `ctx.request` = the HTTP request; 200 with its return value, else the error as on
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
        let who = try await auth(req)
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
    /// `data:` event (a chunk with newlines becomes several `data:` lines, as SSE requires;
    /// event names are dropped, as in Pylon), then `event: result` with the return value or
    /// `event: error` with `{"code","message"}`, then the response ends.
    static func streamCall(_ functions: FunctionService, _ name: String, _ args: [UInt8], _ who: AuthContext) -> Response {
        let (chunks, feed) = AsyncStream<String>.makeStream()
        let body = ResponseBody { writer in
            let out = EventStreamWriterBox(writer)
            let call = Task {
                do {
                    let result = try await functions.call(name, argsJSON: args, auth: who, stream: { _, data in
                        feed.yield(sseData(data))
                    })
                    feed.yield("event: result\n" + sseData(String(decoding: result, as: UTF8.self)))
                } catch {
                    let e = DataService.hostError(error)
                    feed.yield("event: error\n" + sseData(JSONWriter.string(.object([("code", .string(e.code)), ("message", .string(e.message))]))))
                }
                feed.finish()
            }
            for await chunk in chunks { try await out.write(chunk) }
            _ = await call.value
            try await out.finish()
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    static func sseData(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "data: \($0)\n" }.joined() + "\n"
    }
}
