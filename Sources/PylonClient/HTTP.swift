import Foundation
import NIOConcurrencyHelpers
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the client keeps its token (a session token `pylon_…` or an API key `pk.…`).
public protocol TokenStorage: Sendable {
    func get() -> String?
    func set(_ token: String?)
}

/// A token in memory (the default; an app that wants sign-in to survive a restart passes
/// its own storage, e.g. the Keychain).
public final class MemoryTokenStorage: TokenStorage {
    private let token = NIOLockedValueBox<String?>(nil)
    public init(_ initial: String? = nil) { token.withLockedValue { $0 = initial } }
    public func get() -> String? { token.withLockedValue { $0 } }
    public func set(_ token: String?) { self.token.withLockedValue { $0 = token } }
}

/// One HTTP answer.
struct HTTPReply: Sendable {
    var status: Int
    var body: Data
    /// Header names lowercased.
    var headers: [String: String]
}

/// The HTTP side of the client: base URL, bearer token, JSON in and out, typed errors.
///
/// Requests go through URLSession's completion-handler API wrapped in a continuation with
/// no cancellation handler, on purpose: cancelling a Task inside swift-corelibs-foundation's
/// async `data(for:)` can deadlock. Cancelling a Swift task that awaits a request therefore
/// does not stop the request; it ends by its answer or its timeout.
final class HTTP: Sendable {
    let baseURL: URL
    let tokens: TokenStorage
    private let session: URLSession

    init(baseURL: URL, tokens: TokenStorage, timeout: TimeInterval) {
        self.baseURL = baseURL
        self.tokens = tokens
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = timeout
        cfg.requestCachePolicy = .reloadIgnoringLocalCacheData
        cfg.urlCache = nil
        // The bearer token is the credential; cookies from the host are not kept.
        cfg.httpShouldSetCookies = false
        cfg.httpCookieStorage = nil
        session = URLSession(configuration: cfg)
    }

    deinit { session.finishTasksAndInvalidate() }

    /// `baseURL` + `path` (path may carry a query string).
    func url(_ path: String) -> URL {
        var base = baseURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        return URL(string: base + path) ?? baseURL
    }

    func makeRequest(_ method: String, _ path: String, body: Data?, headers: [String: String],
                     anonymous: Bool) -> URLRequest {
        var req = URLRequest(url: url(path))
        req.httpMethod = method
        req.httpBody = body
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        if !anonymous, let token = tokens.get() { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return req
    }

    /// Sends a request and answers whatever status came back; no answer is NETWORK_ERROR.
    func send(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
              anonymous: Bool = false) async throws(PylonError) -> HTTPReply {
        let req = makeRequest(method, path, body: body, headers: headers, anonymous: anonymous)
        let session = self.session
        let result: Result<HTTPReply, PylonError> = await withCheckedContinuation { cont in
            session.dataTask(with: req) { data, response, error in
                if let error {
                    cont.resume(returning: .failure(.network(error)))
                } else if let http = response as? HTTPURLResponse {
                    cont.resume(returning: .success(HTTPReply(status: http.statusCode, body: data ?? Data(),
                                                              headers: Self.headers(http))))
                } else {
                    cont.resume(returning: .failure(PylonError(code: "NETWORK_ERROR", message: "not an HTTP answer", status: 0)))
                }
            }.resume()
        }
        return try result.get()
    }

    /// A JSON request: the parsed body of a 2xx, else the host's error as a PylonError.
    func request(_ path: String, method: String? = nil, body: JSON? = nil,
                 anonymous: Bool = false) async throws(PylonError) -> JSON {
        let data = body?.encoded()
        let reply = try await send(method ?? (body == nil ? "GET" : "POST"), path, body: data,
                                   headers: data == nil ? [:] : ["Content-Type": "application/json"],
                                   anonymous: anonymous)
        return try Self.json(reply)
    }

    /// The JSON body of a 2xx answer (null when empty), or the host's error.
    static func json(_ reply: HTTPReply) throws(PylonError) -> JSON {
        let parsed = reply.body.isEmpty ? JSON.null : ((try? JSON.parse(reply.body)) ?? .string(String(decoding: reply.body, as: UTF8.self)))
        guard (200..<300).contains(reply.status) else { throw PylonError.fromBody(status: reply.status, body: parsed) }
        return parsed
    }

    static func headers(_ http: HTTPURLResponse) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in http.allHeaderFields {
            if let k = k as? String, let v = v as? String { out[k.lowercased()] = v }
        }
        return out
    }
}

/// Percent-encodes one path segment or query value.
func escape(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
}
