import HummingbirdWebSocket
import NIOWebSocket

/// RFC 6455 rules the WebSocket library leaves to the server, applied on every WebSocket
/// listener (`/api/sync/ws` and port+1) through their shared `WebSocketServerConfiguration`.
/// Invalid UTF-8 in a text message is the library's own check (`validateUTF8`, close
/// 1007); this adds the masking rule.
enum WebSocketFrameRules {
    static func configuration(maxFrameSize: Int) -> WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: maxFrameSize,
                                     extensions: [.nonNegotiatedExtension { ClientFramesMasked() }],
                                     autoPing: .enabled(timePeriod: .seconds(30)),
                                     validateUTF8: true)
    }
}

/// RFC 6455 §5.1: a server must close the connection when a client frame is not masked.
/// The library hands data frames (text, binary, continuation) to its extensions before
/// unmasking them, so a non-negotiated extension sees the mask key. The library maps the
/// error thrown here to close code 1002 (protocol error), like its own framing errors.
/// Control frames (ping, pong, close) never reach extensions; an unmasked one is still
/// answered, which relays nothing to anyone.
struct ClientFramesMasked: WebSocketExtension {
    var name: String { "pylon-client-frames-masked" }

    func processReceivedFrame(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        guard frame.maskKey != nil else { throw NIOWebSocketError.fragmentedControlFrame }
        return frame
    }

    func processFrameToSend(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame { frame }

    func shutdown() async {}
}
