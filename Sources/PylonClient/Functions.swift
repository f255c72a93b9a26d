import Foundation

/// Server functions (queries, mutations, actions): `POST /api/fn/NAME`, answered whole or
/// streamed as server-sent events.
public final class Functions: Sendable {
    private let http: HTTP

    init(http: HTTP) { self.http = http }

    /// Calls a function and answers its return value (the host's error as a PylonError).
    public func call(_ name: String, _ args: JSON = [:]) async throws(PylonError) -> JSON {
        try await http.request("/api/fn/\(escape(name))", body: args)
    }

    /// Calls a function that streams (`ctx.stream.write`): `onChunk` gets each written
    /// piece in order as it arrives; answers the return value, or throws the function's error.
    public func stream(_ name: String, _ args: JSON = [:],
                       onChunk: @Sendable (String) async -> Void) async throws(PylonError) -> JSON {
        let parts = http.stream("POST", "/api/fn/\(escape(name))", body: args.encoded(),
                                headers: ["Content-Type": "application/json", "Accept": "text/event-stream"])
        var status = 0
        var isEvents = false
        var whole = Data()
        var parser = ServerEventParser()
        var outcome: Result<JSON, PylonError>?
        do {
            for try await part in parts {
                switch part {
                case let .head(s, headers):
                    status = s
                    isEvents = (200..<300).contains(s) && (headers["content-type"] ?? "").contains("text/event-stream")
                case let .body(data) where !isEvents:
                    whole.append(data)
                case let .body(data):
                    for e in parser.feed(data) {
                        switch e.event {
                        case "result": outcome = .success((try? JSON.parse(e.data)) ?? .null)
                        case "error":
                            let body = try? JSON.parse(e.data)
                            outcome = .failure(PylonError.fromBody(status: status, body: body?["error"] != nil ? body : ["error": body ?? .null]))
                        default: await onChunk(e.data)
                        }
                    }
                }
            }
        } catch {
            throw (error as? PylonError) ?? .network(error)
        }
        if !isEvents { return try HTTP.json(HTTPReply(status: status, body: whole, headers: [:])) }
        guard let outcome else {
            throw PylonError(code: "STREAM_ENDED", message: "function \(name) ended its stream without a result", status: 0)
        }
        return try outcome.get()
    }
}
