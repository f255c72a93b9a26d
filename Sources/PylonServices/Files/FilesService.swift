import Crypto
import Foundation
import NIOCore
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonData
import PylonJSON

/// The host's side of `pylon.files/1`: uploads written through the plugin in chunks while
/// their size and SHA-256 are counted, and stored files read back by range. Every plugin
/// call may block on the disk, so each runs on `queue`, never on an event loop.
///
/// Threads: any task may call; an `Upload` is used by one task at a time.
package final class FilesService: @unchecked Sendable {
    let table: UnsafePointer<pylon_files_v1>
    let instance: OpaquePointer
    package let plugin: LoadedPlugin
    private let queue = DispatchQueue(label: "pylon.files", attributes: .concurrent)

    /// The required slots (2.3), up to `remove`; `list` (2.7) is optional.
    static let minimumSize = MemoryLayout<pylon_files_v1>.offset(of: \pylon_files_v1.list)!

    package init(_ served: ServedCapability) throws(HostError) {
        let size = Int(served.table.load(as: UInt32.self))
        guard size >= Self.minimumSize else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(served.plugin.id) returned a pylon.files/1 table of \(size) bytes, expected at least \(Self.minimumSize); rebuild it against this host's header")
        }
        // A host-owned, zero-filled copy of the host's layout: a slot past the plugin's
        // table (an older minor) reads as NULL, and nothing past `struct_size` is read.
        let copy = UnsafeMutablePointer<pylon_files_v1>.allocate(capacity: 1)
        copy.initialize(to: pylon_files_v1())
        memcpy(copy, served.table, min(size, MemoryLayout<pylon_files_v1>.size))
        table = UnsafePointer(copy)
        instance = served.instance
        plugin = served.plugin
        let missing = missingSlots
        guard missing.isEmpty else {
            copy.deallocate()
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_INCOMPLETE",
                            message: "files plugin \(served.plugin.id) (\(served.plugin.fileName)) left \(missing.joined(separator: ", ")) NULL; the plugin is broken: fix it, or set plugins.files.use to \"none\"")
        }
    }

    /// Runs `body` (plugin calls that may block) on the files queue.
    private func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            queue.async { c.resume(with: Result { try body() }) }
        }
    }

    /// An upload in progress: the plugin's handle and what was written so far. Ends with
    /// `commit` or `abort` (exactly one; `abort` after either is a no-op).
    package final class Upload: @unchecked Sendable {
        let handle: OpaquePointer
        package let key: String
        package private(set) var size: Int64 = 0
        private var hash = SHA256()
        fileprivate var ended = false

        init(handle: OpaquePointer, key: String) {
            self.handle = handle
            self.key = key
        }

        fileprivate func counted(_ bytes: UnsafeRawBufferPointer) {
            size += Int64(bytes.count)
            hash.update(bufferPointer: bytes)
        }

        package var sha256: String { hash.finalize().map { String(format: "%02x", $0) }.joined() }
    }

    package func begin() async throws -> Upload {
        try await offload { [self] in try beginNow() }
    }

    /// Writes `chunk` to the upload (counting its size and hash). On failure the upload is
    /// aborted.
    package func write(_ upload: Upload, _ chunk: ByteBuffer) async throws {
        try await offload { [self] in try chunk.withUnsafeReadableBytes { try writeNow(upload, $0) } }
    }

    /// Makes the upload durable and readable under its key.
    package func commit(_ upload: Upload) async throws {
        try await offload { [self] in try commitNow(upload) }
    }

    /// Discards the upload (a no-op once it has ended).
    package func abort(_ upload: Upload) async {
        _ = try? await offload { [self] in abortNow(upload) }
    }

    /// The stored file's size, or nil when the plugin has no file under `key`.
    package func size(of key: String) async throws -> Int64? {
        try await offload { [self] in try sizeNow(of: key) }
    }

    /// Up to `count` bytes of the file `key` from `offset` (fewer only at its end).
    package func read(_ key: String, offset: Int64, count: Int) async throws -> ByteBuffer {
        try await offload { [self] in
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                try readNow(key, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: out.prefix(count)))
            }
            return buffer
        }
    }

    /// Deletes the bytes under `key`; a missing file is not an error (the row is what counts).
    package func remove(_ key: String) async throws {
        try await offload { [self] in try removeNow(key) }
    }

    // The same calls made on the caller's thread, which then waits on the disk: for the
    // `pylon-host backup` / `restore` CLI (its own thread, no event loop), and for the
    // async calls above (on `queue`).

    package func beginNow() throws -> Upload {
        var handle: OpaquePointer?
        var key = [CChar](repeating: 0, count: Int(PYLON_FILES_KEY_MAX))
        var keyLen = 0
        let capture = PluginErrorCapture()
        let status = key.withUnsafeMutableBufferPointer { k in
            capture.withSink { table.pointee.begin(instance, &handle, k.baseAddress, &keyLen, $0) }
        }
        guard status == PYLON_OK, let handle, keyLen > 0, keyLen <= key.count else {
            throw fault(capture, status, "FILES_BEGIN_FAILED")
        }
        let text = key.prefix(keyLen).withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        return Upload(handle: handle, key: text)
    }

    /// Appends `bytes` (counting size and hash); on failure the upload is aborted.
    package func writeNow(_ upload: Upload, _ bytes: UnsafeRawBufferPointer) throws {
        let capture = PluginErrorCapture()
        upload.counted(bytes)
        let status = capture.withSink {
            table.pointee.write(instance, upload.handle, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, $0)
        }
        guard status == PYLON_OK else {
            abortNow(upload)
            throw fault(capture, status, "FILES_WRITE_FAILED")
        }
    }

    package func commitNow(_ upload: Upload) throws {
        guard !upload.ended else { throw HostError(status: 500, code: "FILES_UPLOAD_ENDED", message: "the upload has already ended") }
        upload.ended = true
        let capture = PluginErrorCapture()
        let status = capture.withSink { table.pointee.commit(instance, upload.handle, $0) }
        guard status == PYLON_OK else { throw fault(capture, status, "FILES_COMMIT_FAILED") }
    }

    package func abortNow(_ upload: Upload) {
        guard !upload.ended else { return }
        upload.ended = true
        table.pointee.abort(instance, upload.handle)
    }

    package func sizeNow(of key: String) throws -> Int64? {
        var size: UInt64 = 0
        let capture = PluginErrorCapture()
        let status = key.utf8CString.withUnsafeBufferPointer { k in
            capture.withSink { table.pointee.stat(instance, k.baseAddress, k.count - 1, &size, $0) }
        }
        if status == PYLON_ERR_NOT_FOUND { return nil }
        guard status == PYLON_OK else { throw fault(capture, status, "FILES_STAT_FAILED") }
        return Int64(size)
    }

    /// Reads into `out` from `offset`; how many bytes came (fewer than `out.count` only at
    /// the end of the file).
    package func readNow(_ key: String, offset: Int64, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        var got = 0
        let capture = PluginErrorCapture()
        let status = key.utf8CString.withUnsafeBufferPointer { k in
            capture.withSink {
                table.pointee.read(instance, k.baseAddress, k.count - 1, UInt64(offset),
                                   out.baseAddress?.assumingMemoryBound(to: UInt8.self), out.count, &got, $0)
            }
        }
        guard status == PYLON_OK else { throw fault(capture, status, "FILES_READ_FAILED") }
        return min(got, out.count)
    }

    package func removeNow(_ key: String) throws {
        let capture = PluginErrorCapture()
        let status = key.utf8CString.withUnsafeBufferPointer { k in
            capture.withSink { table.pointee.remove(instance, k.baseAddress, k.count - 1, $0) }
        }
        guard status == PYLON_OK || status == PYLON_ERR_NOT_FOUND else { throw fault(capture, status, "FILES_REMOVE_FAILED") }
    }

    /// Which required slots the plugin left NULL (`init` refuses a plugin with any).
    package var missingSlots: [String] {
        let t = table.pointee
        let slots: [(String, Bool)] = [("begin", t.begin != nil), ("write", t.write != nil), ("commit", t.commit != nil),
                                       ("abort", t.abort != nil), ("stat", t.stat != nil), ("read", t.read != nil), ("remove", t.remove != nil)]
        return slots.filter { !$0.1 }.map(\.0)
    }

    /// Whether the plugin can list its keys (2.7 `list`), which the orphan sweep needs.
    package var canList: Bool { table.pointee.list != nil }

    /// One stored file as `list` reports it.
    package struct Listed: Sendable {
        package let key: String
        package let size: Int64
        package let modifiedMs: Int64
    }

    /// Up to `limit` stored keys after `after` (nil: from the first), in key order, and
    /// whether more may follow. Only when `canList`.
    package func list(after: String?, limit: Int) async throws -> (files: [Listed], more: Bool) {
        try await offload { [self] in
            guard let list = table.pointee.list else {
                throw HostError(status: 501, code: "FILES_LIST_UNSUPPORTED", message: "\(plugin.id) cannot list its files (pylon_files_v1.list, ABI 2.7); update the plugin")
            }
            final class Sink { var files: [Listed] = [] }
            let sink = Sink()
            var more: UInt8 = 0
            let capture = PluginErrorCapture()
            let status = Array((after ?? "").utf8).withUnsafeBufferPointer { a in
                a.withMemoryRebound(to: CChar.self) { a in
                    withExtendedLifetime(sink) {
                        capture.withSink { err in
                            list(instance, a.baseAddress, a.count, UInt32(max(1, min(limit, 1000))), { ctx, key, len, size, modified in
                                guard let ctx, let key, len > 0, len <= Int(PYLON_FILES_KEY_MAX) else { return }
                                let sink = Unmanaged<Sink>.fromOpaque(ctx).takeUnretainedValue()
                                guard sink.files.count < 1000 else { return }
                                let text = String(decoding: UnsafeRawBufferPointer(start: key, count: len), as: UTF8.self)
                                sink.files.append(Listed(key: text, size: Int64(clamping: size), modifiedMs: modified))
                            }, Unmanaged.passUnretained(sink).toOpaque(), &more, err)
                        }
                    }
                }
            }
            guard status == PYLON_OK else { throw fault(capture, status, "FILES_LIST_FAILED") }
            return (sink.files, more != 0)
        }
    }

    /// The plugin's failure as a host error: a full disk is 507 DISK_FULL (its message says
    /// what to do), anything else 500 with the plugin's code.
    private func fault(_ capture: PluginErrorCapture, _ status: pylon_status, _ fallback: String) -> HostError {
        let e = capture.failure(status, code: fallback, message: "the files plugin failed with status \(status)")
        if e.code == "DISK_FULL" {
            return HostError(status: 507, code: "DISK_FULL", message: "the file could not be stored: the server's disk is full; try again later or ask the operator to free space")
        }
        return HostError(status: 500, code: e.code, message: "\(plugin.id): \(e.message)")
    }
}
