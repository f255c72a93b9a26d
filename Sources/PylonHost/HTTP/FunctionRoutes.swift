import Foundation
import Hummingbird

extension RouteContext {
    /// `/api/fn` (pylon-core.md §2.12) when a plugin serves `pylon.functions/1`; without
    /// one, the capability stub answers 501.
    func addFunctionRoutes(_ router: Router<PylonRequestContext>) {
        guard let functions else { return }
        router.get("/api/fn") { req, _ in
            try await requireAdmin(req, "listing functions")
            return HTTPSupport.bytes(functions.list())
        }
        router.post("/api/fn/:name") { req, ctx in
            let name = try ctx.parameters.require("name")
            let args = try await body(req, empty: .object([]))
            let who = try await auth(req)
            metrics.add("fn_calls_total", 1)
            if req.headers[.accept]?.contains("text/event-stream") == true {
                _ = try functions.describe(name) // unknown → 404 JSON, not a stream
                return Self.streamCall(functions, name, args, who)
            }
            return HTTPSupport.bytes(try await functions.call(name, args: args, auth: who))
        }
    }

    /// `Accept: text/event-stream` (Pylon's streaming path): each `ctx.stream` chunk is a
    /// `data:` event (a chunk with newlines becomes several `data:` lines, as SSE requires;
    /// event names are dropped, as in Pylon), then `event: result` with the return value or
    /// `event: error` with `{"code","message"}`, then the response ends.
    static func streamCall(_ functions: FunctionService, _ name: String, _ args: JSONValue, _ who: AuthContext) -> Response {
        let (chunks, feed) = AsyncStream<String>.makeStream()
        let body = ResponseBody { writer in
            let out = EventStreamWriterBox(writer)
            let call = Task {
                do {
                    let result = try await functions.call(name, args: args, auth: who, stream: { _, data in
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
