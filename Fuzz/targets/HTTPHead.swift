import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTPTypesHTTP1
@testable import PylonEdge
import PylonCore

/// libFuzzer target: the host's HTTP front on arbitrary bytes — the pipeline every listener
/// builds (`ConnectionGuard`, NIO's decoder and encoder, `CodecGuard`, the conversion to HTTP
/// types, `HTTPFront`, see Sources/PylonEdge/HTTP/HTTPListener.swift) on an `EmbeddedChannel`,
/// every request answered by callback. The input is fed in two writes, split where its first
/// byte says. Findings: a crash (a precondition in the handlers or NIO, bounds, overflow), a
/// hang, or output that is not a sequence of HTTP/1.1 answers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHead(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let channel = try? frontPipeline() else { fatalError("the pipeline could not be built") }
    let at = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var out = ""
    for piece in [bytes[..<at], bytes[at...]] where channel.isActive && !piece.isEmpty {
        _ = try? channel.writeInbound(ByteBuffer(bytes: piece))
        channel.embeddedEventLoop.run()
        while let o = try? channel.readOutbound(as: IOData.self) {
            if case let .byteBuffer(b) = o { out += String(buffer: b) }
        }
    }
    guard out.isEmpty || out.hasPrefix("HTTP/1.1 ") else { fatalError("output is not an HTTP/1.1 answer: \(out.prefix(200).debugDescription)") }
    _ = try? channel.finish()
    return 0
}

private func frontPipeline() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    let second: Int64 = 1_000_000_000
    let connection = ConnectionGuard(ConnectionDeadlines.Limits(header: 10 * second, body: 10 * second, idle: 60 * second), serverName: "fuzz")
    let echo: @Sendable (HTTPRequest) -> HTTPFront.ImmediateHandler? = { head in
        { body, _, reply in reply(HTTPResponse(status: .ok), ByteBuffer(string: "\(head.method) \(body.readableBytes)")) }
    }
    let shared = HTTPFront.Shared(responder: Router(context: PylonRequestContext.self).buildResponder(), logger: Logger(label: "fuzz"),
                                  serverName: "fuzz", maxBody: 4096, immediate: echo)
    let sync = channel.pipeline.syncOperations
    try sync.addHandler(connection)
    try sync.addHandler(HTTPResponseEncoder())
    try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
    try sync.addHandler(CodecGuard(connection, maxBody: 4096, serverName: "fuzz"))
    try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
    try sync.addHandler(HTTPFront(shared))
    return channel
}
