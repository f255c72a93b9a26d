import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Clients that break the rules, over raw sockets, on every listener the host opens (the
/// API port, Pylon's WebSocket port+1 and SSE port+2): malformed requests get their RFC
/// 9110/9112 answer and a close, slow ones a 408 (or a quiet close) once their timeout
/// passes, open streams are not cut, HEAD and `Expect: 100-continue` work, connections are
/// capped per listener, and a flood at a low open-file limit neither stops the host nor
/// its open connections. After every hostile case the host still answers `GET /health`.
///
/// The timeouts are set short for these hosts (PYLON_HTTP_*_TIMEOUT); the tests only
/// wait for what must happen, with generous limits, and never assert how long it took.
@Suite("Hostile clients: malformed, slow and flooding (black-box, raw sockets, every listener)")
struct HostileClientTests {
    static let manifest = RequestPathTests.manifest
    static let short = ["PYLON_HTTP_HEADER_TIMEOUT": "0.5", "PYLON_HTTP_BODY_TIMEOUT": "500ms", "PYLON_HTTP_IDLE_TIMEOUT": "1"]

    /// What a connection got from the host until it closed.
    struct Seen: CustomStringConvertible {
        var text: String
        var closed: Bool
        /// Status codes of the answers, in order (1xx included).
        var statuses: [Int] {
            text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
        }
        var description: String { "closed: \(closed), got: \(text.prefix(400).debugDescription)" }
    }

    /// Sends `request` (nothing when empty) on a new connection to `port` and reads until the
    /// host closes it. The socket is shut after `timeout` so a hung host fails the test
    /// instead of hanging it (`closed` is then false).
    static func exchange(_ port: Int, _ request: String, timeout: TimeInterval = 30) async throws -> Seen {
        let socket = try TestSocket.connect(port: port)
        if !request.isEmpty { try socket.send(request) }
        return try await readToClose(socket, timeout: timeout)
    }

    static func readToClose(_ socket: TestSocket, timeout: TimeInterval = 30) async throws -> Seen {
        try await RequestPathTests.watched(socket, timeout: timeout) { fired in
            var buf: [UInt8] = []
            loop: while true {
                switch socket.receive() {
                case let .bytes(b): buf += b
                case .end, .failed: break loop
                }
            }
            return Seen(text: String(decoding: buf, as: UTF8.self), closed: !fired.value)
        }
    }

    /// The listeners of `host`, named.
    static func listeners(_ host: HostProcess) -> [(String, Int)] {
        [("API", host.port), ("WS port+1", host.wsCompatPort), ("SSE port+2", host.sseCompatPort)]
    }

    static func expectHealthy(_ host: HostProcess, after what: String) async throws {
        let r = try await host.request("GET", "/health", timeout: 10)
        #expect(r.status == 200, "the host stopped answering after \(what): \(r.body)")
    }

    static let big = String(repeating: "b", count: 40 * 1024)
    static let manyFields = (0..<1000).map { "X-F\($0): v\r\n" }.joined()

    /// Malformed input → the status on (API, port+1, port+2), and the stable code.
    static let malformed: [(name: String, request: String, statuses: [Int], code: String)] = [
        ("an unknown method", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", [501, 501, 501], "METHOD_NOT_IMPLEMENTED"),
        ("a lowercase method", "get /health HTTP/1.1\r\nHost: x\r\n\r\n", [501, 501, 501], "METHOD_NOT_IMPLEMENTED"),
        ("Content-Length with Transfer-Encoding",
         "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400, 400, 400], "MALFORMED_HTTP"),
        ("a header line ending in a bare LF", "GET /health HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", [400, 400, 400], "MALFORMED_HTTP"),
        ("a head with bare LF line ends", "GET /health HTTP/1.1\nHost: x\n\n", [400, 400, 400], "MALFORMED_HTTP"),
        ("a header field over the size limit", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\n\r\n", [431, 431, 431], "HEADERS_TOO_LARGE"),
        ("1000 header fields", "GET /health HTTP/1.1\r\nHost: x\r\n\(manyFields)\r\n", [431, 431, 431], "HEADERS_TOO_LARGE"),
        ("a request target over the limit", "GET /\(String(repeating: "a", count: 20_000)) HTTP/1.1\r\nHost: x\r\n\r\n",
         [414, 414, 414], "URI_TOO_LONG"),
        ("a bad chunk size",
         "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
         [400, 400, 400], "MALFORMED_HTTP"),
        ("HTTP/2.0 in an HTTP/1 request line", "GET /health HTTP/2.0\r\nHost: x\r\n\r\n", [505, 505, 505], "HTTP_VERSION_NOT_SUPPORTED"),
        ("Expect: 100-continue for a body over the limit",
         "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n", [413, 413, 413], "PAYLOAD_TOO_LARGE"),
        ("an expectation other than 100-continue",
         "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: magic\r\n\r\n{}", [417, 417, 417], "EXPECTATION_FAILED"),
    ]

    @Test("Malformed requests get their RFC 9110/9112 status, a JSON error with a stable code, and a close, on every listener")
    func malformedRequests() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, compatPorts: true)
        for c in Self.malformed {
            for (i, (listener, port)) in Self.listeners(host).enumerated() {
                let seen = try await Self.exchange(port, c.request)
                #expect(seen.statuses.first == c.statuses[i], "\(c.name) on \(listener): \(seen)")
                #expect(seen.closed, "\(c.name) on \(listener): the connection should close: \(seen)")
                #expect(seen.text.contains(#""code":""#) && (c.code == "*" || seen.text.contains(c.code)), "\(c.name) on \(listener): \(seen)")
                try await Self.expectHealthy(host, after: "\(c.name) on \(listener)")
            }
        }
    }

    @Test("A malformed request behind a good one is answered after it, in order, then the connection closes")
    func malformedAfterGood() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, compatPorts: true)
        for (listener, port) in Self.listeners(host) {
            let seen = try await Self.exchange(port, "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\nFOO / HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(seen.statuses == [204, 501] && seen.closed, "\(listener): \(seen)")
        }
        try await Self.expectHealthy(host, after: "pipelined malformed requests")
    }

    @Test("An upgrade nothing here serves (h2c, a WebSocket one without its key, one after the first request, CONNECT) is answered as plain HTTP, then the connection closes, on every listener")
    func upgradesServedAsPlainHTTP() async throws {
        // NIO's upgrade handler dropped such a first request without answering: the
        // connection hung (`curl --http2 http://…` never got its answer).
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.short, compatPorts: true)
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        let options = "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n"
        let table: [(String, String, [Int])] = [
            ("an h2c upgrade", "OPTIONS /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n" + options, [204]),
            ("an unknown upgrade without Connection: upgrade", "OPTIONS /health HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\n\r\n" + options, [204]),
            ("a WebSocket upgrade without its key", "OPTIONS /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + options, [204]),
            ("a WebSocket upgrade after the first request", options + "OPTIONS /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\(key)\r\n" + options, [204, 204]),
        ]
        for (name, request, statuses) in table {
            for (listener, port) in Self.listeners(host) {
                let seen = try await Self.exchange(port, request)
                #expect(seen.closed && seen.statuses == statuses, "\(name) on \(listener): \(seen)")
            }
        }
        for (listener, port) in Self.listeners(host) {
            let seen = try await Self.exchange(port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + options)
            #expect(seen.closed && seen.statuses.count == 1 && (seen.statuses.first ?? 0) >= 400, "CONNECT on \(listener): \(seen)")
        }
        let curl = try await Self.exchange(host.port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        #expect(curl.closed && curl.statuses == [200] && curl.text.lowercased().contains("connection: close"), "what curl --http2 sends: \(curl)")
        try await Self.expectHealthy(host, after: "upgrades served as plain HTTP")
    }

    @Test("Slow clients: silence and idleness end quietly, half a head gets 408; a head without its body gets 408 and a close")
    func slowClients() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.short, compatPorts: true)
        let post = "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"
        // (case, request, statuses on API, port+1, port+2). Every listener's front takes a
        // request's whole body before any route sees it, so a missing body is a 408 everywhere.
        let table: [(String, String, [[Int]])] = [
            ("nothing sent", "", [[], [], []]),
            ("idle after an answer", "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n", [[204], [204], [204]]),
            ("half a head", "GET /health HTTP/1.1\r\nHo", [[408], [408], [408]]),
            ("a head and no body", post, [[408], [408], [408]]),
        ]
        for (name, request, statuses) in table {
            for (i, (listener, port)) in Self.listeners(host).enumerated() {
                let seen = try await Self.exchange(port, request)
                #expect(seen.closed && seen.statuses == statuses[i], "\(name) on \(listener): \(seen)")
                if statuses[i].last == 408 {
                    #expect(seen.text.contains("REQUEST_TIMEOUT"), "\(name) on \(listener): \(seen)")
                }
                try await Self.expectHealthy(host, after: "\(name) on \(listener)")
            }
        }
    }

    /// An outside probe (session 24): the front sized each body's buffer by its announced
    /// Content-Length, so a head announcing 10 MiB and sending one byte held 16 MiB until
    /// the body timeout; 150 such connections took the host to 2.5 GB.
    @Test("Heads announcing 10 MiB bodies that send one byte hold memory for what arrived, not what they announce")
    func announcedBodies() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let pid = try #require(host.pid)
        let before = try #require(residentBytes(pid: pid))
        let port = host.port
        let sockets = try await onThread { () -> [TestSocket] in
            try (0..<120).map { _ in
                let s = try TestSocket.connect(port: port)
                try s.send("POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{")
                return s
            }
        }
        defer { for s in sockets { s.close() } }
        // Every head has been read once the host answers a request sent after them all
        // (each connection's bytes were in the host's socket buffers first); the peak is
        // taken over a few more samples.
        var peak = before
        for _ in 0..<20 {
            try await Self.expectHealthy(host, after: "120 announced bodies")
            peak = max(peak, residentBytes(pid: pid) ?? 0)
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(peak - before < 256 << 20, "120 connections of one byte each grew the host by \((peak - before) >> 20) MiB")
    }

    @Test("Bytes that trickle in do not extend the header timeout (slowloris)")
    func trickledHead() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.short, compatPorts: true)
        for (listener, port) in Self.listeners(host) {
            let socket = try TestSocket.connect(port: port)
            try socket.send("GET /health HTTP/1.1\r\nX-Slow: ")
            let done = RequestPathTests.Fired()
            // One byte every 100 ms for as long as the connection lasts (at most the
            // reader's watchdog): a deadline that moved with each byte would never come.
            let trickle = Task {
                while !done.value {
                    try? socket.send("a")
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let seen = try await Self.readToClose(socket)
            done.set()
            trickle.cancel()
            #expect(seen.closed && seen.statuses == [408], "\(listener): \(seen)")
        }
        try await Self.expectHealthy(host, after: "trickled heads")
    }

    @Test("Open SSE and WebSocket streams outlive the idle timeout and still deliver")
    func streamsAreNotIdle() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.short, compatPorts: true)
        let admin = HostProcess.adminToken
        let sse = try await TestEventStream.connect(port: host.sseCompatPort, path: "/", token: admin, label: "sse port+2")
        let apiSSE = try await TestEventStream.connect(port: host.port, token: admin, label: "sse API")
        let ws = try await TestWebSocket.connect(port: host.wsCompatPort, path: "/", token: admin, label: "ws port+1")
        let apiWS = try await TestWebSocket.connect(port: host.port, token: admin, label: "ws API")
        // Several idle timeouts pass (this waits; it does not time anything).
        try await Task.sleep(for: .seconds(3))
        let id = try await host.create("Item", #"{"title":"still here"}"#)
        try await sse.waitForEvent(rowID: id, kind: "insert")
        try await apiSSE.waitForEvent(rowID: id, kind: "insert")
        try await ws.waitForEvent(rowID: id, kind: "insert")
        try await apiWS.waitForEvent(rowID: id, kind: "insert")
        ws.disconnect()
        apiWS.disconnect()
        sse.close()
        apiSSE.close()
    }

    @Test("HEAD is answered wherever GET is, with GET's head and no body; the connection stays usable")
    func headRequests() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, compatPorts: true)
        let id = try await host.create("Item", #"{"title":"h"}"#)
        let cases: [(String, Int, String, Int)] = [
            ("API", host.port, "/health", 200),
            ("API", host.port, "/api/entities/Item/\(id)", 200),
            ("API", host.port, "/api/entities/Item", 200),
            ("API", host.port, "/no/such/route", 404),
            ("WS port+1", host.wsCompatPort, "/", 404),
            ("SSE port+2", host.sseCompatPort, "/", 401), // the stream needs a session, as on GET
        ]
        for (listener, port, path, status) in cases {
            // HEAD, then a request whose answer must follow the HEAD's head at once.
            let seen = try await Self.exchange(port, "HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let answers = seen.text.components(separatedBy: "\r\n\r\n")
            #expect(seen.statuses == [status, 204] && answers.count >= 2 && answers[1].hasPrefix("HTTP/1.1 204"),
                    "HEAD \(path) on \(listener): \(seen)")
        }
        // GET's Content-Length on HEAD.
        let get = try await Self.exchange(host.port, "GET /api/entities/Item/\(id) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let head = try await Self.exchange(host.port, "HEAD /api/entities/Item/\(id) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        func length(_ s: Seen) -> String? {
            s.text.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
        }
        #expect(length(get) != nil && length(get) == length(head), "GET: \(get) HEAD: \(head)")
    }

    @Test("Expect: 100-continue gets 100 Continue on every listener, then the final answer once the body is sent")
    func expectContinue() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, compatPorts: true)
        let body = #"{"title":"expected"}"#
        for (listener, port) in Self.listeners(host) {
            let socket = try TestSocket.connect(port: port)
            try socket.send("POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            let interim = try await onThread { try readHTTPHead(socket) }
            #expect(interim.status == 100, "\(listener): \(interim)")
            try socket.send(body)
            var seen = try await Self.readToClose(socket)
            // Ports +1 and +2 have no such route: their 404 may come before the body does,
            // in the same read as the 100.
            seen.text = String(decoding: interim.rest, as: UTF8.self) + seen.text
            let final = listener == "API" ? 201 : 404
            #expect(seen.statuses == [final] && seen.closed, "\(listener): \(seen)")
        }
    }

    @Test("A bad cursor is 400 INVALID_QUERY with the JSON error body: /api/sync/pull?since=abc, the event stream's since and Last-Event-ID, and a WebSocket upgrade's on /api/sync/ws and port+1")
    func badQueryParameter() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, compatPorts: true)
        defer { host.stop() }
        for query in ["since=abc", "since=-1", "limit=x"] {
            let r = try await host.request("GET", "/api/sync/pull?\(query)")
            #expect(r.status == 400 && r.body.contains("INVALID_QUERY"), "\(query): \(r.body)")
        }
        let ok = try await host.request("GET", "/api/sync/pull?since=0")
        #expect(ok.status == 200, "\(ok.body)")
        // The event stream's cursor too (before any stream starts): the query or the header
        // an EventSource resends.
        let sseCases: [(query: String, headers: [String: String])] = [
            ("?since=abc", [:]), ("", ["Last-Event-ID": "abc"]), ("", ["Last-Event-ID": "-5"]), ("", ["Last-Event-ID": "1e3"]),
        ]
        for c in sseCases {
            let sse = try await host.request("GET", "/api/sync/events\(c.query)", token: HostProcess.adminToken,
                                             headers: c.headers.merging(["Accept": "text/event-stream"]) { a, _ in a })
            #expect(sse.status == 400 && sse.json.errorCode == "INVALID_QUERY", "\(c): \(sse.status) \(sse.body)")
        }
        // And the WebSocket's, refused before the upgrade (not read as "no cursor"), with the
        // same JSON body; the connection closes after it.
        let upgrades: [(port: Int, target: String, extra: String)] = [
            (host.port, "/api/sync/ws?since=abc", ""), (host.port, "/api/sync/ws?since=-1", ""),
            (host.port, "/api/sync/ws", "Last-Event-ID: abc\r\n"), (host.wsCompatPort, "/?since=abc", ""),
        ]
        for u in upgrades {
            let ws = try TestSocket.connect(port: u.port)
            defer { ws.close() }
            try ws.send("GET \(u.target) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                + "Authorization: Bearer \(HostProcess.adminToken)\r\n\(u.extra)\r\n")
            let (answers, closed) = try await RequestPathTests.read(ws, count: 1, closeExpected: true)
            let a = try #require(answers.first)
            #expect(a.status == 400 && a.headers["content-type"] == "application/json" && a.body.contains(#""code":"INVALID_QUERY""#) && closed,
                    "\(u.port) \(u.target) \(u.extra): \(a.status) \(a.headers) \(a.body)")
        }
        // The happy twin: a good cursor upgrades.
        let good = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: HostProcess.adminToken, label: "since=0")
        try await SessionStreams.live(good)
        good.disconnect()
    }

    @Test("Connections are capped per listener: the next client waits in the backlog until one closes; other listeners are unaffected")
    func connectionCap() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_MAX_CONNECTIONS": "3"], compatPorts: true)
        // Three SSE streams fill port+2 (the harness's probes there have closed once each
        // stream's head arrives: each waits for its turn).
        var streams: [TestEventStream] = []
        for i in 0..<3 {
            streams.append(try await TestEventStream.connect(port: host.sseCompatPort, path: "/", token: HostProcess.adminToken, label: "sse \(i)"))
        }
        let waiting = try TestSocket.connect(port: host.sseCompatPort)
        try waiting.send("OPTIONS /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let answer = Task { try await Self.readToClose(waiting, timeout: 60) }
        // Not answered while the three are open (waiting here is not a timing assertion:
        // an answer at any point would be wrong).
        try await Task.sleep(for: .seconds(1))
        try await Self.expectHealthy(host, after: "filling port+2") // the API port has its own cap
        streams[0].close()
        let seen = try await answer.value
        #expect(seen.statuses == [204], "the waiting client should be served once a stream closed: \(seen)")
        for s in streams { s.close() }
    }

    @Test("A connection flood at a low open-file limit: the open connection keeps its answers, the host stays up, and later clients are served")
    func descriptorFlood() async throws {
        // 200 descriptors: about 40 for the host itself, the rest for connections
        // (PYLON_MAX_CONNECTIONS asks for more than fit: the host caps it to the limit).
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_MAX_CONNECTIONS": "100000"], compatPorts: true,
                                               launcher: ["/usr/bin/prlimit", "--nofile=200:200", "--"])
        let keeper = try TestSocket.connect(port: host.port)
        let ask = "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n"
        try keeper.send(ask)
        _ = try await onThread { try readHTTPHead(keeper) }
        var flood: [TestSocket] = []
        for _ in 0..<150 { flood.append(try TestSocket.connect(port: host.port)) }
        for _ in 0..<3 {
            try keeper.send(ask)
            let head = try await onThread { try readHTTPHead(keeper) }
            #expect(head.status == 204, "the open connection stopped being answered during the flood")
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(host.pid.map { kill($0, 0) == 0 } == true, "the host died during the flood. Log:\n\(host.log)")
        for s in flood { s.release() }
        // After the flood a new client is served (the host closes the flood's
        // connections as their peers go).
        try await Self.expectHealthy(host, after: "the flood")
        #expect(!host.log.contains("Signal"), "\(host.log)")
    }
}
