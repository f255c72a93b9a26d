import Foundation

/// A small RFC 6455 client over `TestSocket`, for black-box realtime tests: handshake with
/// any headers and subprotocols (the `Sec-WebSocket-Accept` is verified), masked client
/// frames (text, continuation fragments, close, ping), and a reader thread that collects
/// every server message, answers pings, records the close frame and the end of the TCP
/// stream (clean EOF or reset).
///
/// With `reading: false` the client does the handshake and then reads nothing until
/// `startReading()`: a consumer that stopped reading, whose small receive window
/// (`receiveBuffer`) makes the host's writes back up.
final class TestWebSocket: @unchecked Sendable {
    enum Message {
        case text(String)
        case binary([UInt8])
    }

    let socket: TestSocket
    /// The handshake response: status (101) and headers (names lowercased).
    let status: Int
    let responseHeaders: [String: String]
    let label: String

    private let lock = NSLock()
    private var pending: [UInt8]
    private var _messages: [Message] = []
    private var _json: [Any?] = []
    private var _changes: [Any?] = []
    private var _closeFrame: (code: Int?, reason: String)?
    private var _end: String?
    private var _bytes = 0
    private var sentClose = false
    private var readerStarted = false
    private var fragments: (opcode: UInt8, data: [UInt8])?

    private init(socket: TestSocket, status: Int, headers: [String: String], rest: [UInt8], label: String) {
        self.socket = socket
        self.status = status
        self.responseHeaders = headers
        self.pending = rest
        self.label = label
    }

    deinit { socket.close() }

    /// Opens `ws://127.0.0.1:<port><path>`. `token` goes in `Authorization: Bearer`;
    /// `protocols` in `Sec-WebSocket-Protocol`. Throws unless the host answers 101 with
    /// the right accept key. `behind`: bytes sent in the same write as the request, before
    /// the 101 (frames that RFC 6455 §4.1 says a client must hold back; for hostile tests).
    static func connect(port: Int, path: String = "/api/sync/ws", token: String? = nil,
                        protocols: [String] = [], headers: [String: String] = [:],
                        receiveBuffer: Int? = nil, reading: Bool = true, behind: [UInt8] = [],
                        label: String = "ws") async throws -> TestWebSocket {
        let ws = try await onThread { () throws -> TestWebSocket in
            let socket = try TestSocket.connect(port: port, receiveBuffer: receiveBuffer)
            var keyBytes = [UInt8](repeating: 0, count: 16)
            for i in keyBytes.indices { keyBytes[i] = UInt8.random(in: 0...255) }
            let key = Data(keyBytes).base64EncodedString()
            var req = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            req += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
            if let token { req += "Authorization: Bearer \(token)\r\n" }
            if !protocols.isEmpty { req += "Sec-WebSocket-Protocol: \(protocols.joined(separator: ", "))\r\n" }
            for (k, v) in headers { req += "\(k): \(v)\r\n" }
            req += "\r\n"
            try socket.send(Array(req.utf8) + behind)
            let head = try readHTTPHead(socket)
            guard head.status == 101 else {
                socket.release()
                throw RealtimeTestError("\(label): GET \(path) on port \(port) answered \(head.status), not 101 Switching Protocols (headers \(head.headers), body start \(String(decoding: head.rest.prefix(500), as: UTF8.self)))")
            }
            let expected = Data(TestSHA1.digest(Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
            guard head.headers["sec-websocket-accept"] == expected else {
                socket.release()
                throw RealtimeTestError("\(label): Sec-WebSocket-Accept is \(head.headers["sec-websocket-accept"] ?? "missing"), expected \(expected)")
            }
            return TestWebSocket(socket: socket, status: head.status, headers: head.headers, rest: head.rest, label: label)
        }
        if reading { ws.startReading() }
        return ws
    }

    /// Starts the reader thread (once).
    func startReading() {
        let start = lock.withLock { () -> Bool in
            if readerStarted { return false }
            readerStarted = true
            return true
        }
        guard start else { return }
        Thread { [self] in readLoop() }.start()
    }

    // MARK: State (thread-safe snapshots)

    var messages: [Message] { lock.withLock { _messages } }
    var texts: [String] {
        messages.compactMap { if case let .text(t) = $0 { return t } else { return nil } }
    }
    /// Every text message that is JSON, parsed (each parsed once, on arrival).
    var jsonMessages: [Any?] { lock.withLock { _json } }
    /// The bare change events received (objects with `seq`, `entity` and `kind`), in order.
    var changeEvents: [Any?] { lock.withLock { _changes } }
    var changeEventCount: Int { lock.withLock { _changes.count } }
    /// The close frame the host sent, if any.
    var closeFrame: (code: Int?, reason: String)? { lock.withLock { _closeFrame } }
    /// Why the TCP stream ended ("eof" or "reset: …"); nil while open.
    var end: String? { lock.withLock { _end } }
    /// Bytes received after the handshake.
    var bytesReceived: Int { lock.withLock { _bytes } }

    /// A one-line summary for failure messages.
    var summary: String {
        let ev = changeEvents
        let close = closeFrame.map { "close \($0.code.map(String.init) ?? "-") \"\($0.reason)\"" } ?? "no close frame"
        let lastTexts = texts.suffix(3).map { String($0.prefix(300)) }
        return "\(label): \(messages.count) messages, \(ev.count) change events (seq \(ev.first?["seq"].int ?? 0)…\(ev.last?["seq"].int ?? 0)), \(close), stream \(end ?? "open"), last texts \(lastTexts)"
    }

    // MARK: Sending

    func sendText(_ text: String) throws { try sendFrame(opcode: 0x1, Array(text.utf8)) }

    /// Sends one frame; `fin` false leaves a fragmented message open (continue with opcode 0).
    /// `masked: false` sends it as no client may (RFC 6455 §5.1), for hostile tests.
    /// A failed send names the connection's state (the host's close frame, how the stream
    /// ended): "send on a closed socket" alone does not say why the host closed it.
    func sendFrame(opcode: UInt8, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) throws {
        do {
            try socket.send(Self.frame(opcode: opcode, payload, fin: fin, masked: masked))
        } catch {
            throw RealtimeTestError("\(error) — \(summary)")
        }
    }

    /// One client frame's bytes (masked with a random key unless `masked` is false).
    static func frame(opcode: UInt8, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let n = payload.count
        let maskBit: UInt8 = masked ? 0x80 : 0
        if n < 126 {
            frame.append(maskBit | UInt8(n))
        } else if n < 65536 {
            frame += [maskBit | 126, UInt8(n >> 8), UInt8(n & 0xFF)]
        } else {
            frame.append(maskBit | 127)
            for i in (0..<8).reversed() { frame.append(UInt8(truncatingIfNeeded: UInt64(n) >> (UInt64(i) * 8))) }
        }
        guard masked else { return frame + payload }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame.reserveCapacity(frame.count + n)
        for (i, b) in payload.enumerated() { frame.append(b ^ mask[i & 3]) }
        return frame
    }

    /// Sends a close frame (ignored if the connection is already gone) and shuts the
    /// socket down without waiting for the host's answer.
    func disconnect(code: UInt16 = 1000) {
        let send = lock.withLock { () -> Bool in
            defer { sentClose = true }
            return !sentClose
        }
        if send { try? sendFrame(opcode: 0x8, [UInt8(code >> 8), UInt8(code & 0xFF)]) }
        socket.close()
    }

    /// Drops the TCP connection without a close frame.
    func abort() { socket.close() }

    // MARK: Waiting

    /// Waits until at least `count` change events arrived; returns all of them.
    @discardableResult
    func waitForChangeEvents(_ count: Int, timeout: TimeInterval = 20) async throws -> [Any?] {
        try await eventually("\(count) change events on \(summary)", timeout: timeout) {
            changeEventCount >= count ? changeEvents : nil
        }
    }

    /// Waits for a change event with this `row_id` (and `kind`, if given); returns it.
    @discardableResult
    func waitForEvent(rowID: String, kind: String? = nil, timeout: TimeInterval = 20) async throws -> Any? {
        try await eventually("a \(kind ?? "change") event for row \(rowID) on \(summary)", timeout: timeout) {
            changeEvents.first { $0["row_id"].string == rowID && (kind == nil || $0["kind"].string == kind) }
        }
    }

    /// Waits for a JSON text message matching `predicate`.
    @discardableResult
    func waitForJSON(_ what: String, timeout: TimeInterval = 20, _ predicate: (Any?) -> Bool) async throws -> Any? {
        try await eventually("\(what) on \(summary)", timeout: timeout) {
            jsonMessages.first(where: predicate)
        }
    }

    /// Waits until the host sent a close frame or the stream ended; returns the close
    /// frame (nil when the stream ended without one).
    @discardableResult
    func waitForClose(timeout: TimeInterval = 20) async throws -> (code: Int?, reason: String)? {
        try await eventually("the host to close \(summary)", timeout: timeout) { () -> (code: Int?, reason: String)?? in
            if let c = closeFrame { return .some(c) }
            if end != nil { return .some(nil) }
            return nil
        }
    }

    /// Waits until the TCP stream ended (EOF or reset).
    @discardableResult
    func waitForEnd(timeout: TimeInterval = 20) async throws -> String {
        try await eventually("the TCP stream of \(summary) to end", timeout: timeout) { end }
    }

    // MARK: Reading

    private func readLoop() {
        defer { socket.release() }
        lock.withLock { parse() }
        while true {
            switch socket.receive() {
            case let .bytes(b):
                lock.withLock {
                    _bytes += b.count
                    pending += b
                    parse()
                }
            case .end:
                lock.withLock { _end = _end ?? "eof" }
                return
            case let .failed(e):
                lock.withLock { _end = _end ?? "reset: \(e)" }
                return
            }
        }
    }

    /// Parses complete frames out of `pending` (lock held).
    private func parse() {
        var i = 0
        let p = pending
        while p.count - i >= 2 {
            let b0 = p[i], b1 = p[i + 1]
            let fin = b0 & 0x80 != 0
            let opcode = b0 & 0x0F
            let masked = b1 & 0x80 != 0
            var len = Int(b1 & 0x7F)
            var j = i + 2
            if len == 126 {
                guard p.count - j >= 2 else { break }
                len = Int(p[j]) << 8 | Int(p[j + 1])
                j += 2
            } else if len == 127 {
                guard p.count - j >= 8 else { break }
                len = 0
                for k in 0..<8 { len = len << 8 | Int(p[j + k]) }
                j += 8
            }
            var mask: [UInt8] = []
            if masked {
                guard p.count - j >= 4 else { break }
                mask = Array(p[j..<(j + 4)])
                j += 4
            }
            guard p.count - j >= len else { break }
            var payload = Array(p[j..<(j + len)])
            if masked { for k in payload.indices { payload[k] ^= mask[k & 3] } }
            i = j + len
            handle(fin: fin, opcode: opcode, payload)
        }
        if i > 0 { pending.removeFirst(i) }
    }

    private func handle(fin: Bool, opcode: UInt8, _ payload: [UInt8]) {
        switch opcode {
        case 0x0:
            guard var f = fragments else { return }
            f.data += payload
            if fin {
                deliver(f.opcode, f.data)
                fragments = nil
            } else {
                fragments = f
            }
        case 0x1, 0x2:
            if fin { deliver(opcode, payload) } else { fragments = (opcode, payload) }
        case 0x8:
            let code = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil
            let reason = payload.count > 2 ? String(decoding: payload[2...], as: UTF8.self) : ""
            if _closeFrame == nil { _closeFrame = (code, reason) }
            if !sentClose {
                sentClose = true
                // Straight to the socket: `sendFrame`'s error path reads `summary`, which
                // takes the lock held here.
                try? socket.send(Self.frame(opcode: 0x8, payload.count >= 2 ? Array(payload[0..<2]) : []))
            }
        case 0x9:
            try? socket.send(Self.frame(opcode: 0xA, payload))
        default:
            break
        }
    }

    private func deliver(_ opcode: UInt8, _ data: [UInt8]) {
        guard opcode == 0x1 else {
            _messages.append(.binary(data))
            return
        }
        let text = String(decoding: data, as: UTF8.self)
        _messages.append(.text(text))
        guard let v = try? TestJSON.parse(text) else { return }
        let json: Any? = v
        _json.append(json)
        if json["seq"].int != nil && json["entity"].string != nil && json["kind"].string != nil { _changes.append(json) }
    }
}
