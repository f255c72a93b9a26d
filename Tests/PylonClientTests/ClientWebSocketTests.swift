import Crypto
import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import PylonClient

/// The client WebSocket against a server that writes its 101 and its first frames in one
/// write, so they reach the client in one read (what a host under load does when it has a
/// resync notice or catch-up events ready at once). NIO's client pipeline dropped every
/// byte after the response by default; the first frames were lost and the sync test timed
/// out waiting for the resync notice.
@Suite struct ClientWebSocketTests {
    @Test func framesInTheSameReadAsThe101AreKept() async throws {
        let server = try await OneWriteUpgradeServer.start(frames: [
            .text("first"), .text(String(repeating: "x", count: 300)), .close(4410, "RESYNC_REQUIRED"),
        ])
        let url = try #require(URL(string: "http://127.0.0.1:\(server.port)"))
        let ws = try await WebSocketConnection.connect(baseURL: url, path: "/ws", headers: [])
        let texts = Collected(AsyncStream<String> { continuation in
            Task {
                _ = try? await ws.run(onOpen: {}, onText: { continuation.yield($0) })
                continuation.finish()
            }
        })
        try await eventually("both texts", timeout: .seconds(20)) { texts.all.count == 2 }
        #expect(texts.all == ["first", String(repeating: "x", count: 300)])
        ws.close()
        try await server.stop()
    }

    @Test func theCloseCodeBehindThe101IsReported() async throws {
        let server = try await OneWriteUpgradeServer.start(frames: [.close(4410, "RESYNC_REQUIRED")])
        let url = try #require(URL(string: "http://127.0.0.1:\(server.port)"))
        let ws = try await WebSocketConnection.connect(baseURL: url, path: "/ws", headers: [])
        let end = try await ws.run(onOpen: {}, onText: { _ in })
        #expect(end.code == 4410)
        #expect(end.reason == "RESYNC_REQUIRED")
        try await server.stop()
    }
}

/// Answers one WebSocket upgrade request with the 101 and `frames` in a single write, then
/// keeps the connection open until the client closes it.
private final class OneWriteUpgradeServer: Sendable {
    enum Frame: Sendable {
        case text(String)
        case close(UInt16, String)
    }

    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel) { self.channel = channel }

    static func start(frames: [Frame]) async throws -> OneWriteUpgradeServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(Answer(frames: frames)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return OneWriteUpgradeServer(channel: channel)
    }

    func stop() async throws { try await channel.close() }

    private final class Answer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let frames: [Frame]
        var request = ""
        var answered = false

        init(frames: [Frame]) { self.frames = frames }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !answered else { return }
            var bytes = unwrapInboundIn(data)
            request += bytes.readString(length: bytes.readableBytes) ?? ""
            guard request.contains("\r\n\r\n") else { return }
            answered = true
            let key = request.split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("sec-websocket-key:") }
                .map { $0.dropFirst("sec-websocket-key:".count).trimmingCharacters(in: .whitespaces) } ?? ""
            let accept = Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)))
                .base64EncodedString()
            var out = context.channel.allocator.buffer(capacity: 512)
            out.writeString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            + "Sec-WebSocket-Accept: \(accept)\r\n\r\n")
            for frame in frames {
                switch frame {
                case let .text(text):
                    Self.appendFrame(opcode: 0x1, payload: Array(text.utf8), to: &out)
                case let .close(code, reason):
                    Self.appendFrame(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8), to: &out)
                }
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }

        /// A final, unmasked frame (payloads here stay under 64 KiB).
        static func appendFrame(opcode: UInt8, payload: [UInt8], to out: inout ByteBuffer) {
            out.writeInteger(0x80 | opcode)
            if payload.count < 126 {
                out.writeInteger(UInt8(payload.count))
            } else {
                out.writeInteger(UInt8(126))
                out.writeInteger(UInt16(payload.count))
            }
            out.writeBytes(payload)
        }
    }
}
