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
        var outcome: Result<JSON, PylonError>?
        do {
            for try await item in http.serverEvents("POST", "/api/fn/\(escape(name))", body: args) {
                switch item {
                case let .plain(reply):
                    return try HTTP.json(reply)
                case let .event(e) where e.event == "result":
                    outcome = .success((try? JSON.parse(e.data)) ?? .null)
                case let .event(e) where e.event == "error":
                    let body = try? JSON.parse(e.data)
                    outcome = .failure(PylonError.fromBody(status: 200, body: body?["error"] != nil ? body : .object(["error": body ?? .null])))
                case let .event(e):
                    await onChunk(e.data)
                }
            }
        } catch {
            throw (error as? PylonError) ?? .network(error)
        }
        guard let outcome else {
            throw PylonError(code: "STREAM_ENDED", message: "function \(name) ended its stream without a result", status: 0)
        }
        return try outcome.get()
    }
}
