import NIOCore
import NIOWebSocket

/// RFC 6455 rules for client frames, applied by `WebSocketConnection` on every WebSocket
/// listener (`/api/sync/ws` and port+1). NIO's frame decoder already refuses oversized
/// frames (1009) and fragmented or long control frames (1002); these are the rest.
enum WebSocketFrameRules {
    /// The close code a client frame earns, or nil when it is acceptable:
    /// - §5.1: every client frame is masked — data and control frames alike (1002);
    /// - §5.2: no reserved bit is set (no extension is negotiated) (1002);
    /// - §5.2: the opcode is one RFC 6455 defines (1002).
    static func violation(_ frame: WebSocketFrame) -> WebSocketErrorCode? {
        guard frame.maskKey != nil else { return .protocolError }
        guard frame.rsv1 == false, frame.rsv2 == false, frame.rsv3 == false else { return .protocolError }
        switch frame.opcode {
        case .continuation, .text, .binary, .connectionClose, .ping, .pong: return nil
        default: return .protocolError
        }
    }

    /// A complete text message's text, or nil when it is not valid UTF-8 (§8.1: close 1007).
    static func utf8Text(_ data: ByteBuffer) -> String? {
        String(validating: data.readableBytesView, as: UTF8.self)
    }
}
