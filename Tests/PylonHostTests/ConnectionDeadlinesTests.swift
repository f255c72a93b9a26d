import NIOCore
import NIOHTTP1
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// The pure parts of the HTTP hardening: the per-connection deadline state machine
/// (`ConnectionDeadlines`), the one fault → answer mapping every front uses (`HTTPFault`),
/// the raw front's limits, and the timeout settings. The black-box side is
/// HostileClientTests.
@Suite("HTTP connection deadlines and fault answers (unit)")
struct ConnectionDeadlinesTests {
    static let s: Int64 = 1_000_000_000
    static let limits = ConnectionDeadlines.Limits(header: 10 * s, body: 30 * s, idle: 60 * s)

    @Test("A new connection with nothing sent is closed quietly after the idle timeout")
    func idleConnection() {
        let d = ConnectionDeadlines(Self.limits, now: 0)
        #expect(d.deadline == 60 * Self.s)
        #expect(d.expiry(now: 59 * Self.s) == nil)
        #expect(d.expiry(now: 60 * Self.s) == .close)
        #expect(d.nextCheck(now: 0) == 10 * Self.s, "the timer never sleeps longer than the shortest timeout")
    }

    @Test("Half a head: 408 after the header timeout from its first byte")
    func slowHead() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 5 * Self.s)
        #expect(d.phase == .head(since: 5 * Self.s))
        d.received(now: 14 * Self.s) // more of the same head does not restart the clock
        #expect(d.deadline == 15 * Self.s)
        #expect(d.expiry(now: 15 * Self.s) == .answer(.headTimeout))
    }

    @Test("A head and no body: 408 after the body timeout from the head; half an answer only closes")
    func slowBody() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 0)
        d.headReceived(now: 1 * Self.s)
        #expect(d.deadline == 31 * Self.s)
        #expect(d.expiry(now: 31 * Self.s) == .answer(.bodyTimeout))
        d.responseStarted() // the handler answered before reading the body
        #expect(d.expiry(now: 31 * Self.s) == .abort)
    }

    @Test("While an answer is owed (a slow handler, an SSE stream) nothing expires; idleness starts when it is written")
    func answeringIsNotIdle() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 0)
        d.headReceived(now: 0)
        d.requestReceived(now: 0)
        d.responseStarted()
        #expect(d.deadline == nil)
        #expect(d.expiry(now: 3600 * Self.s) == nil)
        #expect(d.nextCheck(now: 0) == nil, "no timer while the host owes the answer")
        d.answered(now: 100 * Self.s)
        #expect(d.phase == .idle(since: 100 * Self.s))
        #expect(d.expiry(now: 159 * Self.s) == nil)
        #expect(d.expiry(now: 160 * Self.s) == .close)
    }

    @Test("A pipelined head that arrives while an answer is owed is timed from that answer on")
    func pipelinedHead() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 0)
        d.headReceived(now: 0)
        d.requestReceived(now: 0)
        d.received(now: 1 * Self.s) // the next request's first bytes
        #expect(d.deadline == nil)
        d.answered(now: 50 * Self.s)
        #expect(d.phase == .head(since: 50 * Self.s))
        #expect(d.expiry(now: 60 * Self.s) == .answer(.headTimeout))
    }

    @Test("A body is timed even after its request was answered (a 404 before the body); then the close is quiet")
    func bodyTimedWhileAnswered() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 0)
        d.headReceived(now: 0)
        d.responseStarted()
        d.answered(now: 1 * Self.s)
        #expect(d.deadline == 30 * Self.s)
        #expect(d.expiry(now: 30 * Self.s) == .close)
    }

    @Test("An upgraded connection (WebSocket) has no HTTP deadlines")
    func upgraded() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        d.received(now: 0)
        d.headReceived(now: 0)
        d.upgrade()
        d.received(now: 1 * Self.s)
        d.requestReceived(now: 1 * Self.s)
        #expect(d.deadline == nil)
        #expect(d.expiry(now: 1_000_000 * Self.s) == nil)
    }

    @Test("Between requests (or inside an incomplete head) nothing is owed: a shutdown may close the connection at once")
    func betweenRequests() {
        var d = ConnectionDeadlines(Self.limits, now: 0)
        #expect(d.isBetweenRequests)
        d.received(now: 0)
        #expect(d.isBetweenRequests)
        d.headReceived(now: 0)
        #expect(!d.isBetweenRequests)
        d.requestReceived(now: 0)
        #expect(!d.isBetweenRequests, "its answer is owed")
        d.answered(now: 1)
        #expect(d.isBetweenRequests)
        d.upgrade()
        #expect(!d.isBetweenRequests)
    }

    @Test("A timeout that is off never expires; the others still do")
    func limitsOff() {
        var d = ConnectionDeadlines(.init(header: 2 * Self.s, body: nil, idle: nil), now: 0)
        #expect(d.deadline == nil)
        d.received(now: 0)
        #expect(d.expiry(now: 2 * Self.s) == .answer(.headTimeout))
        d.headReceived(now: 0)
        #expect(d.deadline == nil)
        #expect(ConnectionDeadlines(.init(header: nil, body: nil, idle: nil), now: 0).nextCheck(now: 0) == nil)
    }

    @Test("NIO's decoder errors map to the RFC 9110/9112 status that fits")
    func parserErrorMapping() {
        let table: [(HTTPParserError, Int, String)] = [
            (.invalidMethod, 501, "METHOD_NOT_IMPLEMENTED"),
            (.invalidVersion, 505, "HTTP_VERSION_NOT_SUPPORTED"),
            (.headerOverflow, 431, "HEADERS_TOO_LARGE"),
            (.lfExpected, 400, "MALFORMED_HTTP"),
            (.unexpectedContentLength, 400, "MALFORMED_HTTP"),
            (.invalidChunkSize, 400, "MALFORMED_HTTP"),
            (.invalidHeaderToken, 400, "MALFORMED_HTTP"),
            (.invalidURL, 400, "MALFORMED_HTTP"),
            (.unknown, 400, "MALFORMED_HTTP"),
        ]
        for (error, status, code) in table {
            let e = HTTPFault(error).error
            #expect(e.status == status && e.code == code, "\(error) → \(e)")
        }
    }

    @Test("Every fault answers JSON with Connection: close; the encoded answer is one well-formed HTTP/1.1 response")
    func faultAnswers() throws {
        let faults: [(HTTPFault, Int)] = [
            (.malformed("x"), 400), (.methodNotImplemented, 501), (.versionNotSupported, 505), (.targetTooLong, 414),
            (.headTooLarge, 431), (.bodyTooLarge(limit: 10), 413), (.expectationFailed, 417), (.headTimeout, 408), (.bodyTimeout, 408),
        ]
        for (fault, status) in faults {
            let (head, body) = fault.answer(ByteBufferAllocator())
            #expect(head.status.code == status)
            #expect(head.headerFields[.connection] == "close")
            let json = try JSONParser.parse(Array(body.readableBytesView))
            #expect(json["error"]?["code"]?.stringValue == fault.error.code)
            let wire = String(buffer: fault.encoded(server: "t", ByteBufferAllocator()))
            #expect(wire.hasPrefix("HTTP/1.1 \(status) "), "\(wire)")
            #expect(wire.contains("\r\nContent-Length: \(body.readableBytes)\r\n"))
        }
    }

    @Test("Head limits: a target over 8 KiB is 414; a field over 16 KiB, a head over 32 KiB are 431; within them nothing")
    func headLimits() {
        func fields(_ sizes: [Int]) -> [(name: Int, value: Int)] { sizes.map { (name: 5, value: $0) } }
        #expect(HTTPLimits.fault(target: HTTPLimits.maxRequestLine + 1, fields: fields([1])) == .targetTooLong)
        #expect(HTTPLimits.fault(target: HTTPLimits.maxRequestLine, fields: fields([1])) == nil)
        #expect(HTTPLimits.fault(target: 10, fields: fields([HTTPLimits.maxHeaderFieldBytes])) == .headTooLarge)
        #expect(HTTPLimits.fault(target: 10, fields: fields([HTTPLimits.maxHeaderFieldBytes - 5])) == nil)
        #expect(HTTPLimits.fault(target: 10, fields: fields(Array(repeating: 400, count: 90))) == .headTooLarge)
        #expect(HTTPLimits.fault(target: 10, fields: fields(Array(repeating: 100, count: 99))) == nil)
        // The decoder's own limit is looser, so that these reach the check.
        #expect(HTTPLimits.decoderBytes > HTTPLimits.maxHeadBytes && HTTPLimits.decoderBytes > HTTPLimits.maxRequestLine)
    }

    @Test("Timeout settings take seconds, fractions and milliseconds; 0 turns one off; nonsense is refused")
    func settings() throws {
        let c = try HostConfig.fromEnvironment(["PYLON_HTTP_HEADER_TIMEOUT": "0.5", "PYLON_HTTP_BODY_TIMEOUT": "250ms",
                                                "PYLON_HTTP_IDLE_TIMEOUT": "0", "PYLON_MAX_CONNECTIONS": "12"])
        #expect(c.connectionLimits == .init(header: 500_000_000, body: 250_000_000, idle: nil))
        #expect(c.maxConnections == 12)
        let d = try HostConfig.fromEnvironment([:])
        #expect(d.connectionLimits == .init(header: 10 * Self.s, body: 30 * Self.s, idle: 60 * Self.s))
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_HTTP_IDLE_TIMEOUT": "soon"]) }
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_HTTP_BODY_TIMEOUT": "-1"]) }
        let all = FileBudget.OtherListeners(cache: true, shardSocket: true)
        #expect(FileBudget.connectionCap(7, listeners: 3, others: all) == 7)
        #expect(FileBudget.connectionCap(nil, listeners: 3, others: all) >= 16)
    }
}
