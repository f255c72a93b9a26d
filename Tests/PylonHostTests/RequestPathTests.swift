import Foundation
import Testing

/// The one path every request takes (Sources/PylonEdge/HTTP/HTTPFront.swift: NIO's codec,
/// then `HTTPFront` running the router, or a hot route's handler by callback). Every other
/// black-box suite goes through it; these tests pin down what only a raw socket shows:
/// answers to pipelined requests leave in request order whichever way each is dispatched,
/// `Connection: close` ends the connection, bodies up to the limit are taken whole and
/// larger ones refused, a client vanishing mid-request costs nothing, a request trickled in
/// pieces is answered whole, malformed input is refused after the answers owed, and a hot
/// route answers the same by callback as through the router.
@Suite("HTTP request path (black-box, raw sockets)")
struct RequestPathTests {
    static let manifest = """
    {"manifest_version":1,"name":"lane","version":"0.1.0",
     "entities":[{"name":"Item","fields":[{"name":"title","type":"string","optional":false,"unique":false}],"indexes":[]}],
     "routes":[],"policies":[]}
    """

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    /// Reads `count` Content-Length-framed answers, then reports whether the host closed the
    /// connection right after them (`closeExpected`: wait for that; otherwise do not wait).
    /// The socket is shut after `timeout` so a hung host fails the test instead of hanging it.
    static func read(_ socket: TestSocket, count: Int, closeExpected: Bool = false,
                     timeout: TimeInterval = 30) async throws -> (answers: [Answer], closed: Bool) {
        try await watched(socket, timeout: timeout) { fired in
            var buf: [UInt8] = []
            var answers: [Answer] = []
            var ended = false
            func more() throws {
                switch socket.receive() {
                case let .bytes(b): buf += b
                case .end: ended = true
                case let .failed(e): throw RealtimeTestError("receive failed: \(e)")
                }
            }
            while answers.count < count {
                guard let headEnd = Self.find(buf, Array("\r\n\r\n".utf8)) else {
                    if ended { throw RealtimeTestError("connection ended after \(answers.count) of \(count) answers: \(String(decoding: buf, as: UTF8.self))") }
                    try more()
                    continue
                }
                let lines = String(decoding: buf[0..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
                let status = Int(lines[0].split(separator: " ")[1]) ?? 0
                var headers: [String: String] = [:]
                for l in lines.dropFirst() {
                    guard let c = l.firstIndex(of: ":") else { continue }
                    headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
                }
                let length = Int(headers["content-length"] ?? "") ?? 0
                while buf.count < headEnd + 4 + length {
                    if ended { throw RealtimeTestError("connection ended inside an answer body") }
                    try more()
                }
                answers.append(Answer(status: status, headers: headers,
                                      body: String(decoding: buf[(headEnd + 4)..<(headEnd + 4 + length)], as: UTF8.self)))
                buf.removeFirst(headEnd + 4 + length)
            }
            if closeExpected {
                while !ended && buf.isEmpty { try more() }
            }
            // A close by the watchdog is not the host's.
            return (answers, ended && buf.isEmpty && !fired.value)
        }
    }

    /// Runs `read` (blocking reads of `socket`) on its own thread; the socket is shut after
    /// `timeout` so a hung host fails the test instead of hanging it, and `read` can tell
    /// that close from the host's by `fired`.
    static func watched<T: Sendable>(_ socket: TestSocket, timeout: TimeInterval,
                                     _ read: @escaping @Sendable (Fired) throws -> T) async throws -> T {
        let fired = Fired()
        let watchdog = Task {
            try await Task.sleep(for: .seconds(timeout))
            fired.set()
            socket.close()
        }
        defer { watchdog.cancel() }
        return try await onThread { try read(fired) }
    }

    final class Fired: @unchecked Sendable {
        private let lock = NSLock()
        private var flag = false
        func set() { lock.withLock { flag = true } }
        var value: Bool { lock.withLock { flag } }
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    static func post(_ path: String, _ body: String, extra: String = "") -> String {
        "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
    }

    static func get(_ path: String, extra: String = "") -> String { "GET \(path) HTTP/1.1\r\nHost: x\r\n\(extra)\r\n" }

    @Test("Pipelined requests, some answered by callback and some through the router, are answered in request order; Connection: close ends the connection")
    func pipelinedOrder() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        // health (router), insert (callback), manifest (router), a missing row (callback), a
        // malformed insert, health, and a last request asking to close.
        let batch = Self.get("/health") + Self.post("/api/entities/Item", #"{"title":"one"}"#) + Self.get("/api/manifest")
            + Self.get("/api/entities/Item/nope") + Self.post("/api/entities/Item", "{not json")
            + Self.get("/health") + Self.post("/api/entities/Item", #"{"title":"two"}"#, extra: "Connection: close\r\n")
        try socket.send(batch)
        let (answers, closed) = try await Self.read(socket, count: 7, closeExpected: true)
        #expect(answers.map(\.status) == [200, 201, 200, 404, 400, 200, 201], "\(answers.map { "\($0.status) \($0.body.prefix(80))" })")
        #expect(answers[0].body.contains("\"status\":\"ok\""))
        #expect(answers[2].body.contains("\"entities\""), "the manifest answer is third: \(answers[2].body.prefix(200))")
        #expect(answers[4].body.contains("INVALID_JSON"), "\(answers[4].body)")
        #expect(closed, "the host closes the connection after answering Connection: close")
        for a in answers {
            #expect(a.headers["server"] == "pylon-host" && a.headers["date"] != nil && a.headers["access-control-allow-origin"] == "*",
                    "every answer carries the same framework headers: \(a.headers)")
        }
        let list = try await host.request("GET", "/api/entities/Item")
        #expect(list.json["count"].int == 2, "both inserts landed: \(list.body)")
    }

    /// ~150 KB: more than the front queues before it stops reading (64 KiB).
    @Test("1000 pipelined requests in one write are all answered, in order")
    func pipelinedFlood() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        var batch = ""
        for i in 0..<1000 {
            batch += i % 3 == 2 ? Self.get("/api/entities/Item?limit=1&i=\(i)") : Self.post("/api/entities/Item", #"{"title":"n\#(i)"}"#)
        }
        try socket.send(batch)
        let (answers, _) = try await Self.read(socket, count: 1000)
        for (i, a) in answers.enumerated() {
            #expect(a.status == (i % 3 == 2 ? 200 : 201), "answer \(i): \(a.status) \(a.body.prefix(100))")
        }
        #expect(try await host.request("GET", "/api/entities/Item?limit=1000").json["count"].int == 667)
    }

    @Test("Bodies up to PYLON_MAX_BODY_BYTES are taken whole (2 MB here); larger ones get 413")
    func bigBodies() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_MAX_BODY_BYTES": "3000000"])
        defer { host.stop() }
        let big = String(repeating: "b", count: 2_000_000)
        let ok = try await host.request("POST", "/api/entities/Item", json: #"{"title":"\#(big)"}"#)
        #expect(ok.status == 201, "\(ok.body.prefix(200))")
        let id = try #require(ok.json["id"].string)
        #expect(try await host.request("GET", "/api/entities/Item/\(id)").json["title"].string?.count == big.count)
        let huge = String(repeating: "h", count: 3_100_000)
        let tooBig = try await host.request("POST", "/api/entities/Item", json: #"{"title":"\#(huge)"}"#)
        #expect(tooBig.status == 413, "\(tooBig.status) \(tooBig.body.prefix(200))")
    }

    @Test("A client that vanishes mid-request or before its answer costs nothing; its requests are counted on /metrics")
    func vanishingClients() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        for _ in 0..<20 {
            let half = try TestSocket.connect(port: host.port)
            // A complete JSON body, but 84 bytes short of what the head announced.
            try half.send("POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"title\":\"half\"}")
            half.close()
            let gone = try TestSocket.connect(port: host.port)
            try gone.send(Self.post("/api/entities/Item", #"{"title":"left"}"#))
            gone.close()
        }
        let socket = try TestSocket.connect(port: host.port)
        try socket.send(Self.get("/health") + Self.get("/health", extra: "Connection: close\r\n"))
        let (answers, _) = try await Self.read(socket, count: 2, closeExpected: true)
        #expect(answers.map(\.status) == [200, 200])
        socket.close()
        let rows = try await host.request("GET", "/api/entities/Item?limit=1000").json["data"].items
        #expect(!rows.contains { $0["title"].string == "half" }, "a request cut short is never answered or applied")
        #expect(rows.count <= 20)
        let served = try await eventuallyAsync("the request counter on /metrics") { () async throws -> Int? in
            let n = try await host.request("GET", "/metrics").json["counters"]["http_requests_total"].int ?? 0
            return n > 20 ? n : nil
        }
        #expect(served > 20)
    }

    @Test("Requests cut into small pieces at any boundary are answered whole and in order")
    func piecesAtAnyBoundary() async throws {
        // The trickle takes milliseconds, but a test process stalled by a loaded machine can
        // pause it for seconds mid-head; the host's header timeout (10 s) would then end the
        // connection, as it should. Deadlines are HostileClientTests' subject, not this one's.
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_HTTP_HEADER_TIMEOUT": "300"])
        defer { host.stop() }
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        let batch = Array((Self.post("/api/entities/Item", #"{"title":"p1"}"#) + Self.get("/health")
            + Self.post("/api/entities/Item", #"{"title":"p2"}"#, extra: "Cookie: a=1; b=2\r\n")).utf8)
        var at = 0
        var size = 1
        while at < batch.count {
            let end = min(batch.count, at + size)
            try socket.send(String(decoding: batch[at..<end], as: UTF8.self))
            try await Task.sleep(for: .milliseconds(2))
            at = end
            size = size % 13 + 1
        }
        let (answers, _) = try await Self.read(socket, count: 3)
        #expect(answers.map(\.status) == [201, 200, 201], "\(answers.map { "\($0.status) \($0.body.prefix(80))" })")
        let rows = try await host.request("GET", "/api/entities/Item?limit=10").json["data"].items.compactMap { $0["title"].string }
        #expect(Set(rows) == ["p1", "p2"], "\(rows)")
    }

    @Test("Behind an answered request: other routes, chunked bodies and HTTP/1.0 are answered; malformed input gets its 4xx/5xx and a close; earlier answers stand")
    func handsOnToTheCodec() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        // Each: a request answered, then another: well-formed ones are answered; malformed
        // ones get their fault's status and the connection ends.
        let cases: [(String, String, [Int])] = [
            ("duplicate Content-Length", "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", [200, 400]),
            ("a header name with a space", "GET /health HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", [200, 400]),
            ("not HTTP at all (not a method llhttp knows)", "HELLO\r\n\r\n", [200, 501]),
            ("a routed request", Self.get("/api/manifest") + Self.get("/health", extra: "Connection: close\r\n"), [200, 200, 200]),
            ("a chunked body", "POST /api/entities/Item HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n10\r\n{\"title\":\"chnk\"}\r\n0\r\n\r\n"
                + Self.get("/health", extra: "Connection: close\r\n"), [200, 201, 200]),
        ]
        for (name, tail, statuses) in cases {
            let socket = try TestSocket.connect(port: host.port)
            defer { socket.close() }
            try socket.send(Self.get("/health") + tail)
            let (answers, closed) = try await Self.read(socket, count: statuses.count, closeExpected: true, timeout: 10)
            #expect(answers.map(\.status) == statuses, "\(name): \(answers.map { "\($0.status) \($0.body.prefix(80))" })")
            #expect(closed, "\(name): the connection ends")
        }
        // A malformed first request gets a 400 saying what is wrong, and the connection ends.
        let bad = try TestSocket.connect(port: host.port)
        defer { bad.close() }
        try bad.send("GET /health HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n")
        let (rejected, badClosed) = try await Self.read(bad, count: 1, closeExpected: true, timeout: 10)
        #expect(rejected.first?.status == 400 && rejected.first?.body.contains("MALFORMED_HTTP") == true, "\(rejected.map(\.body))")
        #expect(badClosed)
        // HTTP/1.0 is answered, and the connection ends with it.
        let old = try TestSocket.connect(port: host.port)
        defer { old.close() }
        try old.send("GET /health HTTP/1.0\r\n\r\n")
        #expect(try await Self.read(old, count: 1, timeout: 10).answers.map(\.status) == [200])
        let rows = try await host.request("GET", "/api/entities/Item?limit=10").json["data"].items.compactMap { $0["title"].string }
        #expect(rows == ["chnk"], "only the chunked insert was a valid write: \(rows)")
        #expect(try await host.request("GET", "/health").status == 200, "the host is fine")
    }

    @Test("On shutdown an idle keep-alive connection is closed and the host exits")
    func shutdownClosesIdleConnections() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        try socket.send(Self.get("/health"))
        let (answers, _) = try await Self.read(socket, count: 1)
        #expect(answers.map(\.status) == [200])
        host.terminate()
        let (_, closed) = try await Self.read(socket, count: 0, closeExpected: true, timeout: 20)
        #expect(closed, "the host closed the idle connection")
        try await eventually("the host exits after SIGTERM", timeout: 20) { host.hasExited ? true : nil }
    }

    /// `GET /api/entities/E/ID` and `POST /api/entities/E` with plain names are answered
    /// without a Task (`RouteContext.immediateRoute` → `getHandler` / `insertHandler`); with a
    /// query string they go through the router, which runs the same handlers. Both must answer
    /// alike for every caller and outcome.
    @Test("GET /api/entities/E/ID and POST /api/entities/E answer the same without a Task as through the router: rows, 201, 403, 404, 400, headers")
    func pointReadPastTheRouter() async throws {
        let manifest = """
        {"manifest_version":1,"name":"lane-policy","version":"0.1.0",
         "entities":[{"name":"Note","fields":[{"name":"ownerId","type":"string","optional":false,"unique":false},
                                              {"name":"title","type":"string","optional":false,"unique":false}],"indexes":[]}],
         "routes":[],
         "policies":[{"name":"own","entity":"Note","allowRead":"auth.userId == data.ownerId","allowInsert":"auth.userId == data.ownerId"}]}
        """
        let host = try await HostProcess.start(manifest: manifest, dev: false)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let mine = try await host.create("Note", #"{"ownerId":"alice","title":"a \"quoted\" é"}"#, token: alice)
        let theirs = try await host.create("Note", #"{"ownerId":"bob","title":"b"}"#, token: bob)
        let cases: [(String, String?, Int, String?)] = [
            ("/api/entities/Note/\(mine)", alice, 200, nil),
            ("/api/entities/Note/\(mine)", HostProcess.adminToken, 200, nil),
            // A row hidden from the caller answers as an absent id (DESIGN.md §4).
            ("/api/entities/Note/\(theirs)", alice, 404, "NOT_FOUND"),
            ("/api/entities/Note/\(mine)", nil, 404, "NOT_FOUND"),
            ("/api/entities/Note/nosuchid", alice, 404, "NOT_FOUND"),
            ("/api/entities/Nope/\(mine)", alice, 400, "ENTITY_NOT_FOUND"),
        ]
        for (path, token, status, code) in cases {
            let fast = try await host.rawRequest("GET", path, token: token)
            let routed = try await host.rawRequest("GET", path + "?via=router", token: token)
            #expect(fast.status == status && routed.status == status, "\(path): \(fast.status) \(fast.body) / \(routed.status) \(routed.body)")
            if let code { #expect(fast.json.errorCode == code, "\(path): \(fast.body)") }
            #expect(fast.body == routed.body, "\(path): the same answer both ways: \(fast.body) vs \(routed.body)")
            for name in ["content-type", "access-control-allow-origin", "x-content-type-options", "referrer-policy"] {
                #expect(fast.headers[name] != nil && fast.headers[name] == routed.headers[name], "\(path): header \(name): \(fast.headers)")
            }
        }
        let row = try await host.request("GET", "/api/entities/Note/\(mine)", token: alice)
        #expect(row.json["title"].string == "a \"quoted\" é" && row.json["id"].string == mine, "\(row.body)")
        // Inserts: `POST /api/entities/E` is answered without a Task too (`insertRow`).
        let inserts: [(String, String?, Int, String?)] = [
            (#"{"ownerId":"alice","title":"new"}"#, alice, 201, nil),
            (#"{"ownerId":"bob","title":"forged"}"#, alice, 403, "POLICY_DENIED"),
            (#"{"ownerId":"alice","title":"anon"}"#, nil, 403, "POLICY_DENIED"),
            ("{not json", alice, 400, "INVALID_JSON"),
            ("[1]", alice, 400, "INVALID_DATA"),
            (#"{"ownerId":"alice","title":"x","nope":1}"#, alice, 400, nil),
        ]
        for (json, token, status, code) in inserts {
            let fast = try await host.rawRequest("POST", "/api/entities/Note", body: Data(json.utf8), token: token,
                                                 headers: ["Content-Type": "application/json"])
            let routed = try await host.rawRequest("POST", "/api/entities/Note?via=router", body: Data(json.utf8), token: token,
                                                   headers: ["Content-Type": "application/json"])
            #expect(fast.status == status && routed.status == status, "\(json): \(fast.status) \(fast.body) / \(routed.status) \(routed.body)")
            if let code { #expect(fast.json.errorCode == code, "\(json): \(fast.body)") }
            #expect(fast.json.errorCode == routed.json.errorCode, "\(json): \(fast.body) vs \(routed.body)")
            if status == 201 {
                for r in [fast, routed] {
                    let id = try #require(r.json["id"].string, "\(r.body)")
                    let back = try await host.request("GET", "/api/entities/Note/\(id)", token: alice)
                    #expect(back.json["title"].string == "new", "\(back.body)")
                }
            }
            #expect(fast.headers["access-control-allow-origin"] != nil && fast.headers["content-type"] == routed.headers["content-type"])
        }
        let unknown = try await host.request("POST", "/api/entities/Nope", json: "{}", token: alice)
        #expect(unknown.status == 400 && unknown.json.errorCode == "ENTITY_NOT_FOUND", "\(unknown.body)")
        // `cursor` is its own route, never taken for an id.
        let page = try await host.request("GET", "/api/entities/Note/cursor", token: alice)
        #expect(page.status == 200 && page.json["data"].items.count == 3, "alice's first note and her two new ones: \(page.body)")
    }
}
