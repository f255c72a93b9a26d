import Foundation
import NIOConcurrencyHelpers
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One server-sent event: its `event:` name (default "message"), `data:` lines and `id:`.
struct ServerEvent: Sendable, Equatable {
    var event = "message"
    var data = ""
    var id: String?
}

/// Reads `text/event-stream` bytes as they arrive (comments and keepalives skipped).
struct ServerEventParser {
    private var buffer = Data()
    private var current = ServerEvent()
    private var lines: [String] = []

    /// Feeds bytes; answers the events completed by them.
    mutating func feed(_ data: Data) -> [ServerEvent] {
        buffer.append(data)
        var out: [ServerEvent] = []
        while let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            var line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
            buffer.removeSubrange(buffer.startIndex...nl)
            if line.hasSuffix("\r") { line.removeLast() }
            if let e = self.line(line) { out.append(e) }
        }
        return out
    }

    private mutating func line(_ l: String) -> ServerEvent? {
        if l.isEmpty {
            defer { current = ServerEvent(); lines = [] }
            guard !lines.isEmpty else { return nil }
            current.data = lines.joined(separator: "\n")
            return current
        }
        if l.hasPrefix(":") { return nil }
        let field: Substring, value: Substring
        if let colon = l.firstIndex(of: ":") {
            field = l[..<colon]
            let rest = l[l.index(after: colon)...]
            value = rest.hasPrefix(" ") ? rest.dropFirst() : rest
        } else {
            field = Substring(l)
            value = ""
        }
        switch field {
        case "event": current.event = String(value)
        case "data": lines.append(String(value))
        case "id": current.id = String(value)
        default: break
        }
        return nil
    }
}

/// A piece of a streamed HTTP answer.
enum StreamPart: Sendable {
    case head(status: Int, headers: [String: String])
    case body(Data)
}

/// Delivers a URLSession data task's answer as it arrives. corelibs-foundation has no
/// `bytes(for:)`, so this is the delegate API; ending the stream cancels the URLSession
/// task (never a Swift task waiting in URLSession). The status and headers are read from the
/// task when the first bytes (or the end) arrive, which works the same on every platform.
private final class StreamDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<StreamPart, Error>.Continuation
    private let headSent = NIOLockedValueBox(false)

    init(_ continuation: AsyncThrowingStream<StreamPart, Error>.Continuation) { self.continuation = continuation }

    private func sendHead(_ task: URLSessionTask) {
        guard !headSent.withLockedValue({ sent in defer { sent = true }; return sent }),
              let http = task.response as? HTTPURLResponse else { return }
        continuation.yield(.head(status: http.statusCode, headers: HTTP.headers(http)))
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        sendHead(dataTask)
        continuation.yield(.body(data))
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if error == nil { sendHead(task) }
        continuation.finish(throwing: error.map(PylonError.network))
        session.finishTasksAndInvalidate()
    }
}

extension HTTP {
    /// Sends a request whose answer is read as it arrives (server-sent events). `idle` is
    /// how long the stream may stay silent.
    func stream(_ method: String, _ path: String, body: Data?, headers: [String: String],
                idle: TimeInterval = 300) -> AsyncThrowingStream<StreamPart, Error> {
        let req = makeRequest(method, path, body: body, headers: headers, anonymous: false)
        let (stream, continuation) = AsyncThrowingStream<StreamPart, Error>.makeStream()
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = idle
        cfg.httpShouldSetCookies = false
        cfg.httpCookieStorage = nil
        cfg.urlCache = nil
        let session = URLSession(configuration: cfg, delegate: StreamDelegate(continuation), delegateQueue: nil)
        let task = session.dataTask(with: req)
        continuation.onTermination = { _ in task.cancel() }
        task.resume()
        return stream
    }
}

/// What `HTTP.serverEvents` delivers: each event of a `text/event-stream` answer, or — when
/// the answer is anything else (an error, a plain JSON result) — that whole answer once.
enum EventStreamItem: Sendable {
    case event(ServerEvent)
    case plain(HTTPReply)
}

extension HTTP {
    /// Sends a request that may be answered with server-sent events and reads them as they
    /// arrive; ending the iteration ends the request.
    func serverEvents(_ method: String, _ path: String, body: JSON? = nil) -> AsyncThrowingStream<EventStreamItem, Error> {
        var headers = ["Accept": "text/event-stream"]
        if body != nil { headers["Content-Type"] = "application/json" }
        let parts = stream(method, path, body: body?.encoded(), headers: headers)
        let (items, continuation) = AsyncThrowingStream<EventStreamItem, Error>.makeStream()
        let reader = Task {
            var status = 0
            var isEvents = false
            var headers: [String: String] = [:]
            var whole = Data()
            var parser = ServerEventParser()
            do {
                for try await part in parts {
                    switch part {
                    case let .head(s, h):
                        (status, headers) = (s, h)
                        isEvents = (200..<300).contains(s) && (h["content-type"] ?? "").contains("text/event-stream")
                    case let .body(data) where isEvents:
                        for e in parser.feed(data) { continuation.yield(.event(e)) }
                    case let .body(data):
                        whole.append(data)
                    }
                }
                if !isEvents { continuation.yield(.plain(HTTPReply(status: status, body: whole, headers: headers))) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in reader.cancel() }
        return items
    }
}
