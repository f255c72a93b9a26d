import CCurl
import Foundation
import PylonJSON

/// HTTP to identity providers through libcurl, one easy handle per request, run on the
/// plugin's own queue (a request blocks its thread for at most the timeout, never a host
/// thread). Redirects are not followed; TLS is always verified.
struct ProviderHTTP: Sendable {
    let timeoutMs: Int
    let caFile: String?
    /// Largest response read (discovery documents, JWKS, token answers are small).
    static let maxResponseBytes = 1 << 20
    static let queue = DispatchQueue(label: "pylon.auth.oauth.http", attributes: .concurrent)

    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
        var json: JSONValue? { try? JSONParser.parse(body) }
    }

    struct Failure: Error, Sendable {
        var message: String
    }

    /// A GET (no `form`/`json` body) or a POST, off the caller's thread.
    func send(_ url: String, headers: [String] = [], body: [UInt8]? = nil) async throws(Failure) -> Reply {
        let result: Result<Reply, Failure> = await withCheckedContinuation { c in
            Self.queue.async { c.resume(returning: perform(url, headers: headers, body: body)) }
        }
        return try result.get()
    }

    func postForm(_ url: String, _ fields: [(String, String)], headers: [String] = []) async throws(Failure) -> Reply {
        try await send(url, headers: ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json"] + headers,
                       body: Array(Self.formEncode(fields).utf8))
    }

    func getJSON(_ url: String, bearer: String? = nil) async throws(Failure) -> Reply {
        try await send(url, headers: ["Accept: application/json", "User-Agent: pylon-swift"] + (bearer.map { ["Authorization: Bearer \($0)"] } ?? []))
    }

    private func perform(_ url: String, headers: [String], body: [UInt8]?) -> Result<Reply, Failure> {
        guard let h = curl_easy_init() else { return .failure(Failure(message: "libcurl could not create a handle")) }
        defer { curl_easy_cleanup(h) }
        var list: UnsafeMutablePointer<curl_slist>?
        for line in headers + ["Expect:"] { list = curl_slist_append(list, line) }
        defer { curl_slist_free_all(list) }
        var out = pylon_curl_body(data: nil, len: 0, cap: 0, limit: Self.maxResponseBytes)
        defer { free(out.data) }
        var status = 0
        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let ca = caFile.map { Array($0.utf8CString) }
        let rc: CURLcode = Array(url.utf8CString).withUnsafeBufferPointer { u in
            errbuf.withUnsafeMutableBufferPointer { e in
                withOptional(ca) { caPtr in
                    if let body {
                        // One byte more than sent, so the pointer is never NULL for an empty body.
                        return (body.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { c in
                            pylon_curl_request(h, u.baseAddress, list, c.baseAddress, body.count, timeoutMs, min(timeoutMs, 5000), caPtr,
                                               &out, &status, e.baseAddress)
                        }
                    }
                    return pylon_curl_request(h, u.baseAddress, list, nil, 0, timeoutMs, min(timeoutMs, 5000), caPtr, &out, &status, e.baseAddress)
                }
            }
        }
        guard rc == CURLE_OK else {
            let text = String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let detail = text.isEmpty ? String(cString: curl_easy_strerror(rc)) : text
            return .failure(Failure(message: "\(Self.origin(url)): \(detail)"))
        }
        let bytes = out.data.map { Array(UnsafeRawBufferPointer(start: $0, count: out.len)) } ?? []
        return .success(Reply(status: status, body: bytes))
    }

    /// `scheme://host[:port]` of `url`, for messages (never the query, which may hold a code).
    static func origin(_ url: String) -> String {
        guard let u = URLComponents(string: url), let scheme = u.scheme, let host = u.host else { return "the provider" }
        return "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")\(u.path)"
    }

    static func formEncode(_ fields: [(String, String)]) -> String {
        fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    /// RFC 3986 unreserved characters stay; everything else is percent-encoded.
    static func escape(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(b))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }
}

private func withOptional<R>(_ s: [CChar]?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withUnsafeBufferPointer { body($0.baseAddress) }
}
