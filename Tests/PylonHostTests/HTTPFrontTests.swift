import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTPTypesHTTP1
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// RFC 9112 tables for the host's one HTTP front, as unit tests: the pipeline every listener
/// builds (`ConnectionGuard`, NIO's decoder and encoder, `CodecGuard`, the conversion to
/// HTTP types, `HTTPFront`) on an `EmbeddedChannel`, fed raw bytes, its answers read back as
/// bytes. Framing (Content-Length, chunked, both), limits, malformed input, pipelining, and
/// every case split at every byte. The black-box suites (HostileClientTests, RequestPathTests)
/// check the same over real sockets on every listener.
@Suite("HTTP front: RFC 9112 tables on the pipeline every listener builds (EmbeddedChannel)")
struct HTTPFrontTests {
    static let maxBody = 1000
    /// The body limit of the streamed route (larger than `maxBody`, as an upload's may be).
    static let streamedLimit = 5000

    /// A listener's pipeline answering every request with `METHOD PATH BODYLENGTH` (text) by
    /// callback (`HTTPFront.Shared.immediate`), on an `EmbeddedChannel`: nothing suspends, so
    /// everything runs on the test's thread.
    static func pipeline(maxBody: Int = Self.maxBody) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try addFront(to: channel.pipeline.syncOperations, routed: false, maxBody: maxBody)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// The same pipeline answering through `router` (on a Task that prefers the channel's
    /// loop), on an `NIOAsyncTestingChannel`: its loop runs on its own thread and takes work
    /// from any thread, which the routed Task's jobs need (an `EmbeddedEventLoop` must only
    /// be used from the thread that made it).
    static func routedPipeline() async throws -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try addFront(to: channel.pipeline.syncOperations, routed: true)
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        return channel
    }

    /// Adds the handlers every listener's pipeline has (on the channel's loop).
    static func addFront(to sync: ChannelPipeline.SynchronousOperations, routed: Bool, maxBody: Int = Self.maxBody) throws {
        let limits = ConnectionDeadlines.Limits(header: 10_000_000_000, body: 10_000_000_000, idle: 60_000_000_000)
        let connection = ConnectionGuard(limits, serverName: "test")
        let router = Router(context: PylonRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.get("/routed") { _, _ in Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "routed"))) }
        router.get("/stream") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/event-stream"], body: .init { writer in
                try await writer.write(ByteBuffer(string: "one\n"))
                try await writer.write(ByteBuffer(string: "two\n"))
                try await writer.finish(nil)
            })
        }
        // A route that reads its body as it arrives (`Shared.streamed`), as uploads do.
        router.post("/sink") { req, _ in
            var n = 0
            for try await chunk in req.body { n += chunk.readableBytes }
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "got \(n)")))
        }
        let echo: @Sendable (HTTPRequest) -> HTTPFront.ImmediateHandler? = { head in
            if routed { return nil }
            return { body, _, reply in
                var fields = HTTPFields()
                fields[.contentType] = "text/plain"
                reply(HTTPResponse(status: .ok, headerFields: fields), ByteBuffer(string: "\(head.method) \(head.path ?? "") \(body.readableBytes)"))
            }
        }
        let shared = HTTPFront.Shared(responder: router.buildResponder(), logger: Logger(label: "test"), serverName: "test",
                                      maxBody: maxBody, immediate: echo,
                                      streamed: { routed && $0.path == "/sink" ? streamedLimit : nil })
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        try sync.addHandler(connection)
        try sync.addHandler(HTTPResponseEncoder())
        try sync.addHandler(decoder)
        try sync.addHandler(CodecGuard(connection, maxBody: maxBody, serverName: "test"))
        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
        try sync.addHandler(HTTPFront(shared))
    }

    /// What came back: the answers' status codes, their bodies, and whether the front closed.
    struct Seen: CustomStringConvertible {
        var text = ""
        var closed = false
        var statuses: [Int] { text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) } }
        var description: String { "closed: \(closed), got: \(text.debugDescription)" }
    }

    /// Feeds `pieces` one write each, letting the loop run after each, and collects the output.
    static func exchange(_ pieces: [[UInt8]]) throws -> Seen {
        let channel = try pipeline()
        var seen = Seen()
        func drain() throws {
            while let out = try channel.readOutbound(as: IOData.self) {
                if case let .byteBuffer(b) = out { seen.text += String(buffer: b) }
            }
        }
        for piece in pieces where channel.isActive {
            // A decoder fault surfaces as a thrown error here, after CodecGuard answered it.
            _ = try? channel.writeInbound(ByteBuffer(bytes: piece))
            channel.embeddedEventLoop.run()
            try drain()
        }
        channel.embeddedEventLoop.run()
        try drain()
        seen.closed = !channel.isActive
        _ = try? channel.finish()
        return seen
    }

    /// Feeds `input` to the routed pipeline and collects the output until `answers` answers
    /// came back (waiting up to a generous minute for the routed Tasks).
    static func routedExchange(_ input: [UInt8], answers: Int) async throws -> Seen {
        let channel = try await routedPipeline()
        var seen = Seen()
        try await channel.writeInbound(ByteBuffer(bytes: input))
        // Generous: the router's Task waits for a thread of the cooperative pool, which the
        // full parallel run keeps busy.
        let deadline = ContinuousClock.now + .seconds(180)
        while seen.statuses.count < answers, ContinuousClock.now < deadline {
            // Work queued from the loop's own thread waits for `run` (the test loop's rule).
            await channel.testingEventLoop.run()
            if let out = try await channel.readOutbound(as: IOData.self) {
                if case let .byteBuffer(b) = out { seen.text += String(buffer: b) }
            } else {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        seen.closed = !(try await channel.testingEventLoop.executeInContext { channel.isActive })
        _ = try? await channel.finish()
        return seen
    }

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    static let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

    /// Input → the answers' statuses in order, whether the connection ends, and a text the
    /// output must contain ("" for none).
    static let table: [(name: String, input: String, statuses: [Int], closes: Bool, has: String)] = [
        // Framing (RFC 9112 §6).
        ("a GET", get, [200], false, "GET /a 0"),
        ("a body by Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", [200], false, "POST /a 5"),
        ("a chunked body, with an extension and a trailer",
         "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n", [200], false, "POST /a 7"),
        ("Content-Length with Transfer-Encoding (§6.3: smuggling)",
         "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        ("two different Content-Lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", [400], true, "MALFORMED_HTTP"),
        ("a Content-Length that is not a number", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        ("a negative Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        ("a bad chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n0\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        // Limits.
        ("a body over the limit by Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \(maxBody + 1)\r\n\r\n", [413], false, "PAYLOAD_TOO_LARGE"),
        ("a chunked body over the limit",
         "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\(String(maxBody + 1, radix: 16))\r\n\(String(repeating: "z", count: maxBody + 1))\r\n0\r\n\r\n",
         [413], true, "PAYLOAD_TOO_LARGE"),
        ("a target over 8 KiB", "GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: x\r\n\r\n", [414], true, "URI_TOO_LONG"),
        ("a target of 20 KB", "GET /\(String(repeating: "a", count: 20_000)) HTTP/1.1\r\nHost: x\r\n\r\n", [414], true, "URI_TOO_LONG"),
        ("a target of 70 KB", "GET /\(String(repeating: "a", count: 70_000)) HTTP/1.1\r\nHost: x\r\n\r\n", [414], true, "URI_TOO_LONG"),
        ("a head over the decoder's 64 KiB", "GET /a HTTP/1.1\r\nHost: x\r\n" + (0..<9).map { "X-F\($0): \(String(repeating: "v", count: 8000))\r\n" }.joined() + "\r\n",
         [431], true, "HEADERS_TOO_LARGE"),
        ("a field over 16 KiB", "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 17_000))\r\n\r\n", [431], true, "HEADERS_TOO_LARGE"),
        ("a head over 32 KiB in small fields",
         "GET /a HTTP/1.1\r\nHost: x\r\n" + (0..<90).map { "X-F\($0): \(String(repeating: "v", count: 400))\r\n" }.joined() + "\r\n", [431], true, "HEADERS_TOO_LARGE"),
        ("101 fields", "GET /a HTTP/1.1\r\nHost: x\r\n" + (0..<100).map { "X-F\($0): v\r\n" }.joined() + "\r\n", [431], true, "HEADERS_TOO_LARGE"),
        // Malformed heads (§2.2, §3, §5).
        ("an unknown method", "FOO /a HTTP/1.1\r\nHost: x\r\n\r\n", [501], true, "METHOD_NOT_IMPLEMENTED"),
        ("a lowercase method", "get /a HTTP/1.1\r\nHost: x\r\n\r\n", [501], true, "METHOD_NOT_IMPLEMENTED"),
        ("HTTP/2.0 in the request line", "GET /a HTTP/2.0\r\nHost: x\r\n\r\n", [505], true, "HTTP_VERSION_NOT_SUPPORTED"),
        ("a bare LF after the version", "GET /a HTTP/1.1\nHost: x\n\n", [400], true, "MALFORMED_HTTP"),
        ("a header line ending in a bare LF", "GET /a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        ("a space before the colon (§5.1)", "GET /a HTTP/1.1\r\nHost : x\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        ("a header line without a colon", "GET /a HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", [400], true, "MALFORMED_HTTP"),
        // llhttp reads a method first: "HELLO" is not one it knows.
        ("not HTTP at all", "HELLO\r\n\r\n", [501], true, "METHOD_NOT_IMPLEMENTED"),
        ("no Host in HTTP/1.1 (§3.2)", "GET /a HTTP/1.1\r\n\r\n", [400], true, "Host"),
        ("two Host fields (§3.2)", "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", [400], true, "Host"),
        // Connection management (§9).
        ("HTTP/1.0 without keep-alive ends with its answer", "GET /a HTTP/1.0\r\n\r\n", [200], true, "GET /a 0"),
        ("Connection: close ends with its answer", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get, [200], true, "Connection: close"),
        ("Expect: 100-continue", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi", [100, 200], false, "POST /a 2"),
        ("another expectation", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: magic\r\n\r\nhi", [417], true, "EXPECTATION_FAILED"),
        // Pipelining (§9.3).
        ("three pipelined requests, answered in order",
         get + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + "DELETE /c HTTP/1.1\r\nHost: x\r\n\r\n", [200, 200, 200], false, "GET /a 0"),
        ("a malformed request behind good ones", get + get + "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", [200, 200, 501], true, ""),
    ]

    @Test("Each request of the table gets its answer, whole or split at every byte", arguments: 0..<table.count)
    func tableCase(_ i: Int) async throws {
        let c = Self.table[i]
        let whole = try Self.exchange([Self.bytes(c.input)])
        Self.check(whole, c, how: "in one write")
        // Split at every byte (the large-limit cases only at a few points: they are long).
        let input = Self.bytes(c.input)
        let points = input.count <= 600 ? Array(1..<input.count) : [1, 5, input.count / 2, input.count - 1]
        for at in points {
            let split = try Self.exchange([Array(input[..<at]), Array(input[at...])])
            Self.check(split, c, how: "split at byte \(at)")
        }
    }

    static func check(_ seen: Seen, _ c: (name: String, input: String, statuses: [Int], closes: Bool, has: String), how: String) {
        #expect(seen.statuses == c.statuses, "\(c.name), \(how): \(seen)")
        if c.closes {
            #expect(seen.closed, "\(c.name), \(how): the connection should end: \(seen)")
        } else {
            #expect(!seen.closed || c.statuses.last == 413, "\(c.name), \(how): the connection should stay: \(seen)")
        }
        #expect(c.has.isEmpty || seen.text.contains(c.has), "\(c.name), \(how): \(seen)")
    }

    @Test("A pipelined batch fed one byte per write gets the same answers as in one write")
    func byteByByte() async throws {
        let batch = Self.get + "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
            + "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwxyz"
        let seen = try Self.exchange(Self.bytes(batch).map { [$0] })
        #expect(seen.statuses == [200, 200, 200], "\(seen)")
        #expect(seen.text.contains("GET /a 0") && seen.text.contains("POST /b 2") && seen.text.contains("POST /c 4"), "\(seen)")
        let order = ["GET /a 0", "POST /b 2", "POST /c 4"].compactMap { seen.text.range(of: $0)?.lowerBound }
        #expect(order == order.sorted(), "in request order: \(seen)")
    }

    /// An outside probe (session 24): each body read was appended to a copy of the whole
    /// body so far (the buffer sat in an enum payload that a `switch` also held), so a
    /// 10 MiB POST to any URL, anonymous, cost seconds of an event loop, and a few at once
    /// stalled the host. Fed here as 65,536 reads of 1 KiB: in place that is 64 MiB of
    /// copying; copied each time it is about 2.2 TB (here copies ran at about 2 GB/s), which
    /// no minute holds.
    @Test("A collected body grows in place: 64 MiB in 1 KiB reads is answered, by Content-Length and chunked", .timeLimit(.minutes(1)))
    func collectedBodyInPlace() throws {
        let size = 64 << 20, part = 1024
        let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: part)
        for chunked in [false, true] {
            let channel = try Self.pipeline(maxBody: size)
            let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(size)"
            try channel.writeInbound(ByteBuffer(string: "POST /big HTTP/1.1\r\nHost: x\r\n\(framing)\r\n\r\n"))
            if chunked { try channel.writeInbound(ByteBuffer(string: "\(String(size, radix: 16))\r\n")) }
            for _ in 0..<(size / part) { try channel.writeInbound(chunk) }
            if chunked { try channel.writeInbound(ByteBuffer(string: "\r\n0\r\n\r\n")) }
            channel.embeddedEventLoop.run()
            var text = ""
            while let out = try channel.readOutbound(as: IOData.self) {
                if case let .byteBuffer(b) = out { text += String(buffer: b) }
            }
            #expect(text.hasPrefix("HTTP/1.1 200") && text.hasSuffix("POST /big \(size)"), "chunked \(chunked): \(text.prefix(300))")
            _ = try? channel.finish()
        }
    }

    @Test("Every answer carries Date, Server and a Content-Length that matches its body")
    func framing() async throws {
        let seen = try Self.exchange([Self.bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")])
        let text = seen.text.lowercased()
        #expect(text.contains("date: ") && text.contains("server: test"), "\(seen)")
        #expect(text.contains("content-length: 9\r\n") && seen.text.hasSuffix("\r\n\r\nPOST /a 3"), "\(seen)")
    }

    @Test("A streamed body (over the collected-body limit) reaches its handler as it comes; a request pipelined after it is answered; one announced over its limit is 413 and closes")
    func streamedBody() async throws {
        let body = String(repeating: "b", count: 3000)
        let seen = try await Self.routedExchange(Self.bytes("POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n" + body
                + "POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                + "GET /routed HTTP/1.1\r\nHost: x\r\n\r\n"), answers: 3)
        #expect(seen.statuses == [200, 200, 200], "\(seen)")
        #expect(seen.text.contains("got 3000") && seen.text.contains("got 5") && seen.text.hasSuffix("routed"), "\(seen)")
        let over = try await Self.routedExchange(Self.bytes("POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n"), answers: 1)
        #expect(over.statuses == [413], "\(over)")
    }

    @Test("Through the router (on a Task): a whole answer, HEAD with no body, a stream written as chunks, and 404")
    func routed() async throws {
        let seen = try await Self.routedExchange(Self.bytes("GET /routed HTTP/1.1\r\nHost: x\r\n\r\n" + "HEAD /routed HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), answers: 4)
        #expect(seen.statuses == [200, 200, 200, 404], "\(seen)")
        let answers = seen.text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0 }
        guard answers.count == 4 else { return }
        #expect(answers[0].hasSuffix("\r\n\r\nrouted"), "\(answers[0])")
        #expect(answers[1].hasSuffix("\r\n\r\n"), "HEAD: no body: \(answers[1])")
        #expect(answers[2].lowercased().contains("transfer-encoding: chunked") && answers[2].contains("4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"),
                "a stream: \(answers[2])")
    }
}
