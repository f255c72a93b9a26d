import Foundation
import PylonCurl
import PylonJSON

/// HTTP to identity providers (`CurlHTTP`: off the host's threads, TLS always verified, no
/// redirects followed).
struct ProviderHTTP: Sendable {
    let timeoutMs: Int
    let caFile: String?
    /// Largest response read (discovery documents, JWKS, token answers are small).
    static let maxResponseBytes = 1 << 20

    typealias Reply = CurlHTTP.Reply
    typealias Failure = CurlHTTP.Failure

    /// A GET (no `form`/`json` body) or a POST, off the caller's thread.
    func send(_ url: String, headers: [String] = [], body: [UInt8]? = nil) async throws(Failure) -> Reply {
        try await CurlHTTP(timeoutMs: timeoutMs, caFile: caFile, maxResponseBytes: Self.maxResponseBytes).send(url, headers: headers, body: body)
    }

    func postForm(_ url: String, _ fields: [(String, String)], headers: [String] = []) async throws(Failure) -> Reply {
        try await send(url, headers: ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json"] + headers,
                       body: Array(CurlHTTP.formEncode(fields).utf8))
    }

    func getJSON(_ url: String, bearer: String? = nil) async throws(Failure) -> Reply {
        try await send(url, headers: ["Accept: application/json", "User-Agent: pylon-swift"] + (bearer.map { ["Authorization: Bearer \($0)"] } ?? []))
    }
}

extension CurlHTTP.Reply {
    var json: JSONValue? { try? JSONParser.parse(body) }
}
