import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import PylonCore
import PylonData
import PylonJSON

/// Holds an SSE response's body writer. Only the connection's sender task writes to it
/// (keepalives are routed through the subscriber's wake-ups), and `finish` runs after that
/// task ended, so no two writes ever overlap: hence the unchecked Sendable.
final class EventStreamWriterBox: @unchecked Sendable {
    private var writer: (any ResponseBodyWriter)?
    init(_ writer: any ResponseBodyWriter) { self.writer = writer }

    func write(_ text: String) async throws {
        var buf = ByteBufferAllocator().buffer(capacity: text.utf8.count)
        buf.writeString(text)
        try await write(buf)
    }

    func write(_ buf: ByteBuffer) async throws {
        guard var w = writer else { return }
        try await w.write(buf)
        writer = w
    }

    func finish() async throws {
        guard let w = writer else { return }
        writer = nil
        try await w.finish(nil)
    }
}

/// Frames to an SSE response: `id: <seq>` + `data: <event>` per change, `: keepalive`
/// comments, and `event: resync` before closing.
struct EventStreamSink: SyncSink {
    let writer: EventStreamWriterBox

    func write(_ text: String) async throws { try await writer.write(text) }
    func finish() async throws { try await writer.finish() }
    func sendChange(_ payload: String, seq: Int64) async throws { try await write("id: \(seq)\ndata: \(payload)\n\n") }
    /// Room events (the only relays an SSE stream is sent), as unnamed events with no id.
    func sendRelay(_ payload: String) async throws { try await write("data: \(payload)\n\n") }
    func flush() async throws {}
    func sendKeepalive() async throws { try await write(": keepalive\n\n") }
    func sendResyncAndClose(_ error: HostError) async throws {
        try await write("event: resync\ndata: \(JSONWriter.string(error.body))\n\n")
        try await finish()
    }
    /// `event: session_ended` with a SESSION_REVOKED error body; the route then ends the stream.
    func sendSessionEnded() async throws {
        let e = HostError(status: 401, code: "SESSION_REVOKED", message: "the session of this stream was revoked or expired; sign in again")
        try await write("event: session_ended\ndata: \(JSONWriter.string(e.body))\n\n")
    }
}
