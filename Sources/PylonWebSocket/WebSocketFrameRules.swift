import NIOCore
import NIOWebSocket

/// RFC 6455 rules for client frames, applied by the host's `WebSocketConnection` on every
/// WebSocket listener (`/api/sync/ws` and port+1) and by the shard WebSocket plugin
/// (Plugins/ShardWS): one module both link (the plugin statically, its symbols local to it).
/// NIO's frame decoder already refuses oversized frames (1009) and fragmented or long control
/// frames (1002); these are the rest.
public enum WebSocketFrameRules {
    /// The close code a client frame earns, or nil when it is acceptable:
    /// - §5.1: every client frame is masked — data and control frames alike (1002);
    /// - §5.2: no reserved bit is set (no extension is negotiated) (1002);
    /// - §5.2: the opcode is one RFC 6455 defines (1002).
    public static func violation(_ frame: WebSocketFrame) -> WebSocketErrorCode? {
        guard frame.maskKey != nil else { return .protocolError }
        guard frame.rsv1 == false, frame.rsv2 == false, frame.rsv3 == false else { return .protocolError }
        switch frame.opcode {
        case .continuation, .text, .binary, .connectionClose, .ping, .pong: return nil
        default: return .protocolError
        }
    }

    /// A complete text message's text, or nil when it is not valid UTF-8 (§8.1: close 1007).
    public static func utf8Text(_ data: ByteBuffer) -> String? {
        String(validating: data.readableBytesView, as: UTF8.self)
    }

    /// The status code of the close frame that answers a client's close frame, whose
    /// unmasked payload is `payload`; nil: answer with no code (the client sent none).
    /// - §5.5.1: a payload is empty or a 2-byte code then a reason; 1 byte is 1002;
    /// - §7.4.1/§7.4.2: a code that may not be sent (below 1000, 1004 reserved, 1005, 1006 and
    ///   1015 meant for reporting only, 1016–2999 unassigned, 5000 and up) is 1002;
    /// - §5.5.1: the reason is UTF-8; one that is not is 1007;
    /// - else the client's code, echoed (§5.5.1: "typically echos the status code").
    public static func closeAnswer(_ payload: ByteBuffer) -> UInt16? {
        var p = payload
        guard p.readableBytes > 0 else { return nil }
        guard let code = p.readInteger(as: UInt16.self) else { return 1002 }
        guard sendable(code) else { return 1002 }
        guard String(validating: p.readableBytesView, as: UTF8.self) != nil else { return 1007 }
        return code
    }

    /// Whether `code` may appear in a close frame on the wire: RFC 6455's defined codes, those
    /// IANA registered since (1012–1014), and the ranges for libraries and applications.
    public static func sendable(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}
