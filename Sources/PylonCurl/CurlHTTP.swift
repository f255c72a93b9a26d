import CCurl
import Foundation

/// Outbound HTTP through libcurl for the parts that talk to other services (identity
/// providers, email APIs, CAPTCHA and breached-password checks): one easy handle per
/// request, TLS always verified, no redirects followed, http(s) only, the response cut off
/// at `maxResponseBytes`. `perform` blocks its thread for at most the timeout, so `send`
/// runs it on a queue of its own, never on a host or event-loop thread.
///
/// libcurl's global state must be set up first, once per process (`pylon_curl_global_once`).
public struct CurlHTTP: Sendable {
    public var timeoutMs: Int
    public var connectTimeoutMs: Int
    /// A PEM bundle to verify servers with instead of the system's.
    public var caFile: String?
    public var maxResponseBytes: Int

    public init(timeoutMs: Int, connectTimeoutMs: Int? = nil, caFile: String? = nil, maxResponseBytes: Int = 1 << 20) {
        self.timeoutMs = timeoutMs
        self.connectTimeoutMs = connectTimeoutMs ?? min(timeoutMs, 5000)
        self.caFile = caFile
        self.maxResponseBytes = maxResponseBytes
    }

    public struct Reply: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    public struct Failure: Error, Sendable {
        public var message: String
        /// The transfer ran out of time (as opposed to a refused connection, a TLS error, …).
        public var timedOut: Bool
    }

    static let queue = DispatchQueue(label: "pylon.curl", attributes: .concurrent)

    /// A GET (no `body`) or a POST, off the caller's thread.
    public func send(_ url: String, headers: [String] = [], body: [UInt8]? = nil) async throws(Failure) -> Reply {
        let result: Result<Reply, Failure> = await withCheckedContinuation { c in
            Self.queue.async { c.resume(returning: perform(url, headers: headers, body: body)) }
        }
        return try result.get()
    }

    /// The same on the caller's thread (for callers that have a thread of their own).
    public func perform(_ url: String, headers: [String] = [], body: [UInt8]? = nil) -> Result<Reply, Failure> {
        guard let h = curl_easy_init() else { return .failure(Failure(message: "libcurl could not create a handle", timedOut: false)) }
        defer { curl_easy_cleanup(h) }
        var list: UnsafeMutablePointer<curl_slist>?
        for line in headers + ["Expect:"] { list = curl_slist_append(list, line) }
        defer { curl_slist_free_all(list) }
        var out = pylon_curl_body(data: nil, len: 0, cap: 0, limit: maxResponseBytes)
        defer { free(out.data) }
        var status = 0
        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let ca = caFile.map { Array($0.utf8CString) }
        let (timeout, connect) = (timeoutMs, connectTimeoutMs)
        let rc: CURLcode = Array(url.utf8CString).withUnsafeBufferPointer { u in
            errbuf.withUnsafeMutableBufferPointer { e in
                withOptional(ca) { caPtr in
                    guard let body else {
                        return pylon_curl_request(h, u.baseAddress, list, nil, 0, timeout, connect, caPtr, &out, &status, e.baseAddress)
                    }
                    // One byte more than sent, so the pointer is never NULL for an empty body.
                    return (body.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { c in
                        pylon_curl_request(h, u.baseAddress, list, c.baseAddress, body.count, timeout, connect, caPtr, &out, &status, e.baseAddress)
                    }
                }
            }
        }
        guard rc == CURLE_OK else {
            let text = String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let detail = text.isEmpty ? String(cString: curl_easy_strerror(rc)) : text
            return .failure(Failure(message: "\(Self.origin(url)): \(detail)", timedOut: rc == CURLE_OPERATION_TIMEDOUT))
        }
        let bytes = out.data.map { Array(UnsafeRawBufferPointer(start: $0, count: out.len)) } ?? []
        return .success(Reply(status: status, body: bytes))
    }

    /// `scheme://host[:port]/path` of `url`, for messages (never the query, which may hold a secret).
    public static func origin(_ url: String) -> String {
        guard let u = URLComponents(string: url), let scheme = u.scheme, let host = u.host else { return "the server" }
        return "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")\(u.path)"
    }

    /// `application/x-www-form-urlencoded`.
    public static func formEncode(_ fields: [(String, String)]) -> String {
        fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    /// RFC 3986 unreserved characters stay; everything else is percent-encoded.
    public static func escape(_ s: String) -> String {
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
