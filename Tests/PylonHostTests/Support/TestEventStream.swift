import Foundation

/// A Server-Sent Events client over a raw HTTP/1.1 connection (`TestSocket`): sends one
/// GET, reads the response head, then decodes the body (chunked, Content-Length or
/// until EOF) on its own thread into SSE events (`id:`, `event:`, `data:` lines ended
/// by a blank line) and comments (`: connected`, `: keepalive`). A non-200 answer keeps
/// its body in `body` (e.g. the 401 or 429 error JSON).
///
/// With `reading: false` the client reads the response head and then nothing until
/// `startReading()`: a consumer that stopped reading, whose small receive window
/// (`receiveBuffer`) makes the host's writes back up.
final class TestEventStream: @unchecked Sendable {
    struct Event {
        var id: String?
        var event: String?
        var data: String
        /// `data` parsed as JSON (nil if it is not JSON).
        var json: Any?
    }

    let socket: TestSocket
    let status: Int
    let headers: [String: String]
    let label: String

    private let lock = NSLock()
    private var raw: [UInt8]
    private var _events: [Event] = []
    private var _changes: [Event] = []
    private var _comments: [String] = []
    private var _body: [UInt8] = []
    private var _ended: String?
    // Body framing
    private let chunked: Bool
    private var remaining: Int?
    private var chunkLeft = 0
    private var chunkState = 0 // 0: size line, 1: data, 2: CRLF after data, 3: done
    // SSE line state
    private var line: [UInt8] = []
    private var field: (id: String?, event: String?, data: [String]) = (nil, nil, [])
    private var readerStarted = false

    private init(socket: TestSocket, status: Int, headers: [String: String], rest: [UInt8], label: String) {
        self.socket = socket
        self.status = status
        self.headers = headers
        self.label = label
        self.raw = rest
        self.chunked = headers["transfer-encoding"]?.lowercased().contains("chunked") == true
        self.remaining = chunked ? nil : headers["content-length"].flatMap { Int($0) }
    }

    deinit { socket.close() }

    /// `GET <path>` on 127.0.0.1:`port` (or `POST` with `body`, as a streamed function call
    /// is asked for); returns once the response head is read (any status).
    static func connect(port: Int, path: String = "/api/sync/events", token: String? = nil,
                        headers: [String: String] = [:], body: String? = nil,
                        receiveBuffer: Int? = nil, reading: Bool = true, label: String = "sse") async throws -> TestEventStream {
        let stream = try await onThread { () throws -> TestEventStream in
            let socket = try TestSocket.connect(port: port, receiveBuffer: receiveBuffer)
            var req = "\(body == nil ? "GET" : "POST") \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
            if let token { req += "Authorization: Bearer \(token)\r\n" }
            for (k, v) in headers { req += "\(k): \(v)\r\n" }
            if let body { req += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
            req += "\r\n" + (body ?? "")
            try socket.send(req)
            let head = try readHTTPHead(socket)
            return TestEventStream(socket: socket, status: head.status, headers: head.headers, rest: head.rest, label: label)
        }
        if reading { stream.startReading() }
        return stream
    }

    /// Starts the reader thread (once).
    func startReading() {
        let start = lock.withLock { () -> Bool in
            if readerStarted { return false }
            readerStarted = true
            return true
        }
        if start { Thread { [self] in readLoop() }.start() }
    }

    // MARK: State

    var events: [Event] { lock.withLock { _events } }
    /// Events without an `event:` name whose data is a change event, in order.
    var changeEvents: [Event] { lock.withLock { _changes } }
    var changeEventCount: Int { lock.withLock { _changes.count } }
    var comments: [String] { lock.withLock { _comments } }
    /// The raw body of a non-event-stream answer.
    var body: String { lock.withLock { String(decoding: _body, as: UTF8.self) } }
    var bodyJSON: Any? { try? TestJSON.parse(body) }
    /// Set when the body ended (last chunk, Content-Length reached, EOF or reset).
    var ended: String? { lock.withLock { _ended } }

    var summary: String {
        let ev = changeEvents
        let tail = events.suffix(2).map { "\($0.event ?? "message"): \($0.data.prefix(300))" }
        return "\(label) (HTTP \(status)): \(events.count) events, \(ev.count) changes (id \(ev.first?.id ?? "-")…\(ev.last?.id ?? "-")), comments \(comments.prefix(3)), body end \(ended ?? "open"), last \(tail)"
    }

    func close() { socket.close() }

    // MARK: Waiting

    @discardableResult
    func waitForChangeEvents(_ count: Int, timeout: TimeInterval = 20) async throws -> [Event] {
        try await eventually("\(count) change events on \(summary)", timeout: timeout) {
            changeEventCount >= count ? changeEvents : nil
        }
    }

    @discardableResult
    func waitForEvent(rowID: String, kind: String? = nil, timeout: TimeInterval = 20) async throws -> Event {
        try await eventually("a \(kind ?? "change") event for row \(rowID) on \(summary)", timeout: timeout) {
            changeEvents.first { ($0.json as Any?)["row_id"].string == rowID && (kind == nil || ($0.json as Any?)["kind"].string == kind) }
        }
    }

    @discardableResult
    func waitForNamedEvent(_ name: String, timeout: TimeInterval = 20) async throws -> Event {
        try await eventually("an `event: \(name)` on \(summary)", timeout: timeout) {
            events.first { $0.event == name }
        }
    }

    @discardableResult
    func waitForComment(_ text: String, timeout: TimeInterval = 20) async throws -> String {
        try await eventually("the comment \": \(text)\" on \(summary)", timeout: timeout) {
            comments.first { $0 == text }
        }
    }

    @discardableResult
    func waitForEnd(timeout: TimeInterval = 20) async throws -> String {
        try await eventually("the body of \(summary) to end", timeout: timeout) { ended }
    }

    // MARK: Reading

    private func readLoop() {
        defer { socket.release() }
        lock.withLock { consume() }
        while lock.withLock({ _ended == nil }) {
            switch socket.receive() {
            case let .bytes(b):
                lock.withLock {
                    raw += b
                    consume()
                }
            case .end:
                lock.withLock { finishBody("eof") }
                return
            case let .failed(e):
                lock.withLock { finishBody("reset: \(e)") }
                return
            }
        }
    }

    private func finishBody(_ why: String) {
        if _ended == nil { _ended = why }
    }

    /// Decodes the body framing out of `raw` (lock held).
    private func consume() {
        if !chunked {
            var take = raw
            raw.removeAll()
            if let r = remaining {
                if take.count > r { take = Array(take[0..<r]) }
                remaining = r - take.count
            }
            bodyBytes(take)
            if remaining == 0 { finishBody("complete") }
            return
        }
        var i = 0
        loop: while i < raw.count {
            switch chunkState {
            case 0:
                guard let nl = raw[i...].firstIndex(of: 10) else { break loop }
                let sizeText = String(decoding: raw[i..<nl], as: UTF8.self)
                    .split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
                i = nl + 1
                guard let size = Int(sizeText, radix: 16) else {
                    finishBody("bad chunk size line \(sizeText)")
                    break loop
                }
                if size == 0 {
                    chunkState = 3
                    finishBody("last chunk")
                    break loop
                }
                chunkLeft = size
                chunkState = 1
            case 1:
                let n = min(chunkLeft, raw.count - i)
                bodyBytes(Array(raw[i..<(i + n)]))
                i += n
                chunkLeft -= n
                if chunkLeft == 0 { chunkState = 2 }
            case 2:
                guard let nl = raw[i...].firstIndex(of: 10) else { break loop }
                i = nl + 1
                chunkState = 0
            default:
                i = raw.count
            }
        }
        raw.removeFirst(min(i, raw.count))
    }

    private func bodyBytes(_ bytes: [UInt8]) {
        guard status == 200, headers["content-type"]?.hasPrefix("text/event-stream") == true else {
            _body += bytes
            return
        }
        for b in bytes {
            if b == 10 {
                if line.last == 13 { line.removeLast() }
                sseLine(String(decoding: line, as: UTF8.self))
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(b)
            }
        }
    }

    private func sseLine(_ text: String) {
        if text.isEmpty {
            if field.id != nil || field.event != nil || !field.data.isEmpty {
                let data = field.data.joined(separator: "\n")
                let e = Event(id: field.id, event: field.event, data: data, json: try? TestJSON.parse(data))
                _events.append(e)
                let j: Any? = e.json
                if e.event == nil, j["seq"].int != nil, j["kind"].string != nil { _changes.append(e) }
            }
            field = (nil, nil, [])
            return
        }
        if text.hasPrefix(":") {
            var c = text.dropFirst()
            if c.hasPrefix(" ") { c = c.dropFirst() }
            _comments.append(String(c))
            return
        }
        let name: Substring, value: Substring
        if let colon = text.firstIndex(of: ":") {
            name = text[..<colon]
            var v = text[text.index(after: colon)...]
            if v.hasPrefix(" ") { v = v.dropFirst() }
            value = v
        } else {
            name = Substring(text)
            value = ""
        }
        switch name {
        case "id": field.id = String(value)
        case "event": field.event = String(value)
        case "data": field.data.append(String(value))
        default: break
        }
    }
}
