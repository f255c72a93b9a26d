import Foundation

/// Files (`/api/files/*`): upload, download, signed links, delete.
public final class Files: Sendable {
    private let http: HTTP

    init(http: HTTP) { self.http = http }

    /// Uploads `data` as `name` with media type `type` (the body is sent raw); answers the
    /// host's record `{"id","url","owner","name","type","size","sha256","created_at"}`.
    public func upload(_ data: Data, name: String, type: String = "application/octet-stream") async throws(PylonError) -> JSON {
        try HTTP.json(try await http.send("POST", "/api/files/upload", body: data,
                                          headers: ["Content-Type": type, "X-Filename": name]))
    }

    /// The file's bytes (the caller must be allowed to read it).
    public func download(_ id: String) async throws(PylonError) -> Data {
        let reply = try await http.send("GET", "/api/files/\(escape(id))")
        guard (200..<300).contains(reply.status) else { _ = try HTTP.json(reply); return Data() }
        return reply.body
    }

    /// An absolute URL that works without credentials for `expiresIn` seconds (host default: 1 h).
    public func signedURL(_ id: String, expiresIn: Int? = nil) async throws(PylonError) -> URL {
        let r = try await http.request("/api/files/\(escape(id))/sign", body: expiresIn.map { ["expires_in": .int(Int64($0))] } ?? [:])
        let url = r["url"]?.stringValue ?? ""
        return url.hasPrefix("http") ? (URL(string: url) ?? http.url(url)) : http.url(url)
    }

    public func delete(_ id: String) async throws(PylonError) {
        _ = try await http.request("/api/files/\(escape(id))", method: "DELETE")
    }
}
