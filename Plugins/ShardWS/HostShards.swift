import NIOCore
import PylonPluginABI
import PylonPluginKit

/// A refusal from the host (`pylon_host_shards_v1`): the ABI status and the host's code
/// and message.
struct Refusal: Error, Sendable {
    let status: pylon_status
    let code: String
    let message: String

    init(_ status: pylon_status, _ err: UnsafePointer<pylon_error>?) {
        self.status = status
        code = err.map { errorText($0.pointee.code) } ?? ""
        message = err.map { errorText($0.pointee.message) } ?? ""
    }
}

/// A host handle (a caller or a subscription), passed between threads as the ABI allows.
struct HostHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// One delivery taken with `next`, ready to send: the notes as text frames, then the binary
/// frame (8-byte big-endian tick + snapshot), or the end.
enum Delivery {
    case frame(notes: [ByteBuffer], frame: ByteBuffer, dropped: UInt64)
    case ended(reason: String)
}

/// The host's shards (`pylon.host.shards/1`) as Swift calls. The table is the host's, valid
/// from `start` until `stop` returns; the completions run on host threads.
struct HostShards: @unchecked Sendable {
    let table: UnsafePointer<pylon_host_shards_v1>

    /// A one-shot completion handed to the host as its `done_ctx` (retained until it runs).
    final class Once<T>: @unchecked Sendable {
        let fn: (T) -> Void
        init(_ fn: @escaping (T) -> Void) { self.fn = fn }
        var opaque: UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }
        static func take(_ p: UnsafeMutableRawPointer?) -> Once<T> { Unmanaged<Once<T>>.fromOpaque(p!).takeRetainedValue() }
    }

    func authenticate(token: String, peer: String, _ done: @escaping (Result<HostHandle, Refusal>) -> Void) {
        var t = token, p = peer
        let box = Once<Result<HostHandle, Refusal>>(done)
        t.withUTF8 { tb in
            p.withUTF8 { pb in
                tb.withMemoryRebound(to: CChar.self) { tc in
                    pb.withMemoryRebound(to: CChar.self) { pc in
                        table.pointee.authenticate(table.pointee.ctx, tc.baseAddress, tc.count, pc.baseAddress, pc.count, { ctx, status, caller, err in
                            let box = Once<Result<HostHandle, Refusal>>.take(ctx)
                            if status == PYLON_OK, let caller { box.fn(.success(HostHandle(raw: caller))) } else { box.fn(.failure(Refusal(status, err))) }
                        }, box.opaque)
                    }
                }
            }
        }
    }

    func releaseCaller(_ caller: HostHandle) { table.pointee.release_caller(table.pointee.ctx, caller.raw) }

    func subscribe(_ caller: HostHandle, shard: String, sid: String, wake: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Void,
                   wakeCtx: UnsafeMutableRawPointer, _ done: @escaping (Result<HostHandle, Refusal>) -> Void) {
        var s = shard, i = sid
        let box = Once<Result<HostHandle, Refusal>>(done)
        s.withUTF8 { sb in
            i.withUTF8 { ib in
                sb.withMemoryRebound(to: CChar.self) { sc in
                    ib.withMemoryRebound(to: CChar.self) { ic in
                        table.pointee.subscribe(table.pointee.ctx, caller.raw, sc.baseAddress, sc.count, ic.baseAddress, ic.count, wake, wakeCtx, { ctx, status, sub, err in
                            let box = Once<Result<HostHandle, Refusal>>.take(ctx)
                            if status == PYLON_OK, let sub { box.fn(.success(HostHandle(raw: sub))) } else { box.fn(.failure(Refusal(status, err))) }
                        }, box.opaque)
                    }
                }
            }
        }
    }

    /// What the subscription has ready (nil: nothing; the wakeup is armed), framed.
    func next(_ sub: HostHandle, allocator: ByteBufferAllocator) -> Delivery? {
        final class Out {
            var delivery: Delivery?
            let allocator: ByteBufferAllocator
            init(_ a: ByteBufferAllocator) { allocator = a }
        }
        let out = Out(allocator)
        let got = withExtendedLifetime(out) {
            table.pointee.next(table.pointee.ctx, sub.raw, { ctx, d in
                guard let ctx, let d else { return }
                let out = Unmanaged<Out>.fromOpaque(ctx).takeUnretainedValue()
                out.delivery = Self.copy(d.pointee, out.allocator)
            }, Unmanaged.passUnretained(out).toOpaque())
        }
        return got == 0 ? nil : out.delivery
    }

    private static func copy(_ d: pylon_shard_delivery, _ allocator: ByteBufferAllocator) -> Delivery {
        guard d.kind == PYLON_SHARD_DELIVERY_FRAME else { return .ended(reason: errorText(d.reason)) }
        var notes: [ByteBuffer] = []
        if let p = d.notes.ptr, d.notes.len > 0 {
            let raw = UnsafeRawBufferPointer(start: p, count: d.notes.len)
            for line in raw.split(separator: 10, omittingEmptySubsequences: true) {
                var b = allocator.buffer(capacity: line.count)
                b.writeBytes(line)
                notes.append(b)
            }
        }
        var frame = allocator.buffer(capacity: 8 + d.snapshot.len)
        frame.writeInteger(d.tick, endianness: .big)
        if let p = d.snapshot.ptr, d.snapshot.len > 0 { frame.writeBytes(UnsafeRawBufferPointer(start: p, count: d.snapshot.len)) }
        return .frame(notes: notes, frame: frame, dropped: d.dropped)
    }

    /// Queues a client's input frame; nil when queued, else the error frame to send back.
    func input(_ sub: HostHandle, _ message: ByteBuffer) -> (status: pylon_status, reply: String?) {
        final class Reply { var text: String? }
        let reply = Reply()
        let status = withExtendedLifetime(reply) {
            message.withUnsafeReadableBytes { m in
                table.pointee.input(table.pointee.ctx, sub.raw, m.baseAddress?.assumingMemoryBound(to: CChar.self), m.count, { ctx, json, len in
                    guard let ctx, let json else { return }
                    Unmanaged<Reply>.fromOpaque(ctx).takeUnretainedValue().text =
                        String(decoding: UnsafeRawBufferPointer(start: json, count: len), as: UTF8.self)
                }, Unmanaged.passUnretained(reply).toOpaque())
            }
        }
        return (status, status == PYLON_OK ? nil : reply.text)
    }

    func unsubscribe(_ sub: HostHandle) { table.pointee.unsubscribe(table.pointee.ctx, sub.raw) }
}
