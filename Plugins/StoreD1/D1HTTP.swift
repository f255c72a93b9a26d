import CCurl
#if canImport(Glibc)
import Glibc
#endif
import PylonPluginABI
import PylonPluginKit

/// One keep-alive HTTP connection to the D1 query API (a reusable libcurl easy handle).
/// Threads: used by one store connection, so by one thread at a time.
///
/// Retries: a request is re-sent only when libcurl could not even connect (nothing was
/// sent). Once bytes may have reached D1 the outcome is reported, never retried here; the
/// commit path (`D1Connection.commit`) settles an unknown outcome by asking D1 whether the
/// batch's commit marker exists, and the marker's primary key makes a replayed batch fail
/// as a whole, so a batch is never applied twice.
final class D1HTTP {
    let config: D1Config
    private let handle: UnsafeMutableRawPointer
    private let headers: UnsafeMutablePointer<curl_slist>
    private let url: [CChar]
    private let caFile: [CChar]?

    /// What became of one request.
    enum Outcome {
        /// D1 answered (any HTTP status).
        case answered(status: Int, body: [UInt8])
        /// Nothing reached D1 (could not resolve or connect).
        case notSent(String)
        /// The request may or may not have reached D1 (timeout, connection dropped, ...).
        case unknown(String)
    }

    private init(config: D1Config, handle: UnsafeMutableRawPointer, headers: UnsafeMutablePointer<curl_slist>) {
        self.config = config
        self.handle = handle
        self.headers = headers
        url = Array(config.queryURL.utf8CString)
        caFile = config.caFile.map { Array($0.utf8CString) }
    }

    static func make(_ config: D1Config) -> Result<D1HTTP, StoreFailure> {
        guard let h = curl_easy_init() else {
            return .failure(StoreFailure(PYLON_ERR_NO_MEMORY, "NO_MEMORY", "libcurl could not create a handle"))
        }
        var list: UnsafeMutablePointer<curl_slist>?
        for line in ["Authorization: Bearer \(config.apiToken)", "Content-Type: application/json", "Accept: application/json", "Expect:"] {
            guard let next = curl_slist_append(list, line) else {
                curl_slist_free_all(list)
                curl_easy_cleanup(h)
                return .failure(StoreFailure(PYLON_ERR_NO_MEMORY, "NO_MEMORY", "libcurl could not build headers"))
            }
            list = next
        }
        return .success(D1HTTP(config: config, handle: h, headers: list!))
    }

    deinit {
        curl_easy_cleanup(handle)
        curl_slist_free_all(headers)
    }

    /// POSTs one JSON body. Retries (at most twice) only when the request was not sent.
    func post(_ body: [UInt8]) -> Outcome {
        var last = Outcome.notSent("no attempt")
        for attempt in 0..<3 {
            last = postOnce(body)
            guard case .notSent = last else { return last }
            if attempt < 2 { usleep(UInt32(100_000 * (attempt + 1))) }
        }
        return last
    }

    private func postOnce(_ body: [UInt8]) -> Outcome {
        var out = pylon_curl_body(data: nil, len: 0, cap: 0, limit: config.maxResponseBytes)
        defer { free(out.data) }
        var status = 0
        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let rc: CURLcode = body.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                url.withUnsafeBufferPointer { u in
                    errbuf.withUnsafeMutableBufferPointer { e in
                        withOptionalCString(caFile) { ca in
                            pylon_curl_post(handle, u.baseAddress, headers, c.baseAddress, c.count, config.timeoutMs,
                                            config.connectTimeoutMs, ca, &out, &status, e.baseAddress)
                        }
                    }
                }
            }
        }
        if rc == CURLE_OK {
            let bytes = out.data.map { Array(UnsafeRawBufferPointer(start: $0, count: out.len)) } ?? []
            return .answered(status: status, body: bytes)
        }
        let message = errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let detail = message.isEmpty ? String(cString: curl_easy_strerror(rc)) : String(decoding: message, as: UTF8.self)
        let what = "\(config.baseURL): \(detail) (curl \(rc.rawValue))"
        switch rc {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return .notSent(what)
        default:
            return .unknown(what)
        }
    }
}

private func withOptionalCString<R>(_ s: [CChar]?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withUnsafeBufferPointer { body($0.baseAddress) }
}
