import Foundation
import NIOCore
import NIOPosix
import PylonPluginABI

/// The host service "pylon.host.loops/1" (`pylon_host_loops_v1`: `loop_count`,
/// `current_loop`, `watch_fd`, `unwatch_fd`; its table is `HostServices.loopsTable`). The loops are NIO's process-wide group, the one the HTTP
/// server and Swift concurrency run on, so bytes a plugin's child writes are read on the
/// same threads that answer requests (a function call's reply then completes its request
/// without a thread hand-off when both share a loop).
enum HostLoops {
    static let group = MultiThreadedEventLoopGroup.singleton
    /// The group's loops in a fixed order: `loop` indexes into it.
    static let loops: [any EventLoop] = Array(group.makeIterator())

    /// Index of the loop running the calling thread, -1 when not on one.
    static func current() -> Int32 {
        guard let here = MultiThreadedEventLoopGroup.currentEventLoop else { return -1 }
        return loops.firstIndex { $0 === here }.map(Int32.init) ?? -1
    }

    typealias OnData = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int) -> Void
    typealias OnClose = @convention(c) (UnsafeMutableRawPointer?, pylon_status) -> Void

    /// Starts reading `fd` on loop `loop` (modulo the count; -1: the group's next). Nil, and
    /// the fd untouched, when it is not a pipe or a socket. A registration that fails later
    /// closes the fd and reports `on_close(PYLON_ERR_IO)`. The returned handle holds one
    /// retain of the `FDWatch`, given back by `unwatch`.
    static func watch(fd: Int32, loop: Int32, onData: OnData, onClose: OnClose, ctx: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0 else { return nil }
        let type = st.st_mode & S_IFMT
        guard type == S_IFIFO || type == S_IFSOCK else { return nil }
        let target = loop >= 0 ? loops[Int(loop) % loops.count] : group.next()
        let watch = FDWatch(onData: onData, onClose: onClose, ctx: ctx, loop: target)
        NIOPipeBootstrap(group: target)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 1024))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FDWatchHandler(watch)) }
            }
            .takingOwnershipOfDescriptor(input: fd)
            .whenComplete { result in
                switch result {
                case let .success(channel): watch.attached(channel)
                case .failure:
                    close(fd) // still ours when the bootstrap fails
                    watch.closed(PYLON_ERR_IO)
                }
            }
        return Unmanaged.passRetained(watch).toOpaque()
    }

    static func unwatch(_ handle: UnsafeMutableRawPointer) {
        let watch = Unmanaged<FDWatch>.fromOpaque(handle).takeRetainedValue()
        watch.stop()
    }
}

/// One watched fd. `on_close` is delivered once, on the loop, whichever of end of file, a
/// read error, a failed registration or `unwatch` comes first. Loop-confined state except
/// where noted.
final class FDWatch: @unchecked Sendable {
    let onData: HostLoops.OnData
    let onClose: HostLoops.OnClose
    let ctx: UnsafeMutableRawPointer?
    let loop: any EventLoop
    private var channel: (any Channel)?
    private var stopRequested = false
    private var done = false

    init(onData: @escaping HostLoops.OnData, onClose: @escaping HostLoops.OnClose, ctx: UnsafeMutableRawPointer?, loop: any EventLoop) {
        self.onData = onData
        self.onClose = onClose
        self.ctx = ctx
        self.loop = loop
    }

    /// On the loop: the channel is registered (it may already have seen its end).
    func attached(_ channel: any Channel) {
        if done { return }
        self.channel = channel
        if stopRequested { channel.close(promise: nil) }
    }

    /// Any thread: the plugin gave the handle back.
    func stop() {
        loop.execute { [self] in
            if done { return }
            stopRequested = true
            if let channel { channel.close(promise: nil) } // on_close(ABORTED) from channelInactive
        }
    }

    func data(_ buffer: ByteBuffer) {
        if done { return }
        buffer.withUnsafeReadableBytes { raw in
            onData(ctx, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
        }
    }

    /// On the loop, once.
    func closed(_ status: pylon_status) {
        if done { return }
        done = true
        channel = nil
        onClose(ctx, stopRequested ? PYLON_ERR_ABORTED : status)
    }
}

/// Hands a watched fd's bytes and its end to the `FDWatch`.
private final class FDWatchHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let watch: FDWatch
    private var failed = false

    init(_ watch: FDWatch) { self.watch = watch }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        watch.data(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failed = true
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watch.closed(failed ? PYLON_ERR_IO : PYLON_OK)
    }
}
