import NIOCore
import NIOWebSocket

/// Joins a client's fragmented messages (RFC 6455 §5.4) from data frames that have each
/// passed `WebSocketFrameRules.violation` (masked, no reserved bit), for the host's
/// `WebSocketConnection` and the shard WebSocket plugin alike. Checking each fragment and
/// joining here, rather than in NIO's `NIOWebSocketFrameAggregator`, matters: the
/// aggregator hands on a joined frame without a mask key, which the per-frame rule then
/// refuses, so every fragmented message was closed with 1002.
///
/// NIO's decoder refuses a single frame over the limit from its header, before buffering
/// its payload (1009); here the fragments of one message are held to the same total,
/// checked before a fragment is appended, so a connection never holds more than `limit`
/// bytes of a message however it is split.
public struct WebSocketMessageJoiner {
    public enum Outcome {
        /// A whole message: its first frame's opcode (text or binary) and its unmasked bytes.
        case message(WebSocketOpcode, ByteBuffer)
        /// A fragment was kept; the message goes on in the next data frame.
        case pending
        /// Close with this code: 1002 (a continuation with nothing started, or a new message
        /// inside a fragmented one), 1009 (the message would pass `limit`).
        case refused(WebSocketErrorCode)
    }

    /// The most bytes a whole message may have.
    public let limit: Int
    /// A fragmented message being joined: its first frame's opcode and the bytes so far.
    private var partial: (opcode: WebSocketOpcode, data: ByteBuffer)?

    public init(limit: Int) { self.limit = limit }

    /// Takes one data frame (text, binary or continuation; control frames are the caller's).
    public mutating func take(_ frame: WebSocketFrame) -> Outcome {
        var message: (opcode: WebSocketOpcode, data: ByteBuffer)
        switch frame.opcode {
        case .continuation:
            // Taken out of `partial`: no second reference while appending (no copy of the buffer).
            guard var started = partial.take() else { return .refused(.protocolError) }
            guard started.data.readableBytes + frame.data.readableBytes <= limit else { return .refused(.messageTooLarge) }
            var more = frame.unmaskedData
            started.data.writeBuffer(&more)
            message = started
        case .text where partial == nil, .binary where partial == nil:
            message = (frame.opcode, frame.unmaskedData)
        default:
            // A new message inside a fragmented one, or an opcode no data frame has.
            partial = nil
            return .refused(.protocolError)
        }
        guard message.data.readableBytes <= limit else { return .refused(.messageTooLarge) }
        guard frame.fin else {
            partial = message
            return .pending
        }
        return .message(message.opcode, message.data)
    }
}
