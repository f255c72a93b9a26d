import HTTPTypes
import Hummingbird
import NIOCore

// The writers `HTTPFront` hands a response body, and the write-progress deadline of an
// answer written as it comes. Threads as in `HTTPFront`: the front's methods run on the
// connection's event loop; the writers are called from the answering Task and hop there.

extension HTTPFront {
    /// Counts a body chunk of a streamed answer towards the write-progress deadline
    /// (`Shared.writeTimeout`): `write` completes once the chunk left (or failed).
    func trackStreamWrite(_ write: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        let me = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        if let due = streamWrites.began(now: .now()) {
            streamWrites.timer = context.eventLoop.scheduleTask(deadline: due) { me.value.0.checkStreamWrites(context: me.value.1) }
        }
        write.whenComplete { _ in me.value.0.streamWrites.ended(now: .now()) }
    }

    /// The write-progress check: closes a connection whose streamed answer made no progress
    /// for `writeTimeout` (the client stopped reading; its socket is full). The answer's
    /// writer then fails, which ends the stream and what feeds it (a sync subscriber, a
    /// shard subscription, a function call's chunks).
    private func checkStreamWrites(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        switch streamWrites.check(now: .now()) {
        case .idle: break
        case let .checkAt(due):
            let me = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            streamWrites.timer = context.eventLoop.scheduleTask(deadline: due) { me.value.0.checkStreamWrites(context: me.value.1) }
        case .stalled:
            shared.onWriteTimeout?()
            context.close(promise: nil)
        }
    }
}

/// Writes a streamed answer's body to the connection, one awaited write per chunk.
struct StreamWriter: ResponseBodyWriter {
    let bound: NIOLoopBound<(HTTPFront, ChannelHandlerContext)>
    let loop: any EventLoop

    mutating func write(_ chunk: ByteBuffer) async throws {
        let bound = bound
        try await loop.flatSubmit {
            let (front, context) = bound.value
            return front.writeChunk(chunk, context: context)
        }.get()
    }

    mutating func write(contentsOf chunks: some Sequence<ByteBuffer>) async throws {
        for c in chunks { try await write(c) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        let bound = bound
        loop.execute {
            let (front, context) = bound.value
            front.endStream(context: context)
        }
    }
}

/// A response body gathered into one buffer (owned by the answering Task).
final class CollectedBody: @unchecked Sendable {
    var buffer: ByteBuffer
    init(_ buffer: ByteBuffer) { self.buffer = buffer }
}

/// Writes a response body into a `CollectedBody`.
struct BodyCollector: ResponseBodyWriter {
    let into: CollectedBody

    mutating func write(_ chunk: ByteBuffer) async throws {
        var c = chunk
        into.buffer.writeBuffer(&c)
    }

    mutating func write(contentsOf chunks: some Sequence<ByteBuffer>) async throws {
        for c in chunks { try await write(c) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
