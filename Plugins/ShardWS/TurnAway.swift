import NIOCore

/// A connection over the per-address or total cap: answered with HTTP 429 the moment it is
/// active, without waiting for (or reading) its request, and closed once the answer is
/// written. A peer that never reads still loses the socket at `deadlineMs`: every
/// connection the listener accepts has a deadline, refused ones too, so refusals never
/// accumulate descriptors (they were held until the peer spoke, i.e. for ever).
/// Lives on the channel's event loop.
final class TurnAway: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    static let body = #"{"error":{"code":"TOO_MANY_CONNECTIONS","message":"too many shard WebSocket connections from your address (or in all); close some and retry"}}"#
    static let response = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
        + "Connection: close\r\nRetry-After: 1\r\n\r\n" + body
    private let deadlineMs: Int
    private var answered = false
    /// The deadline's close, cancelled once the channel is gone: a pending task keeps the
    /// channel (and its buffers) alive until it fires, so a flood of refusals would hold
    /// them all for `deadlineMs` after their sockets closed.
    private var deadline: Scheduled<Void>?

    init(deadlineMs: Int) { self.deadlineMs = deadlineMs }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { answer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        answer(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    /// Whatever the peer sends is dropped unread.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func answer(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        let channel = context.channel
        deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(deadlineMs))) { channel.close(promise: nil) }
        let bytes = channel.allocator.buffer(string: Self.response)
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in channel.close(promise: nil) }
    }
}
