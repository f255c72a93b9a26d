import PylonPluginABI

#if canImport(Glibc)
import Glibc
#endif

/// Helpers for writing plugins in Swift against `pylon_plugin.h` (DESIGN.md §2): error
/// filling, the static descriptor, store-call completion, and logging through the host
/// table. Linked statically into each plugin; the ABI stays the C header alone.

/// Writes `status`, `code` and `message` into a caller-owned `pylon_error` (truncating
/// to the fixed buffers, always NUL-terminated). A NULL `err` is ignored.
public func fillError(_ err: UnsafeMutablePointer<pylon_error>?, _ status: pylon_status, _ code: String, _ message: String) {
    guard let err else { return }
    err.pointee.status = status
    withUnsafeMutableBytes(of: &err.pointee.code) { copyCString(code, into: $0) }
    withUnsafeMutableBytes(of: &err.pointee.message) { copyCString(message, into: $0) }
}

private func copyCString(_ s: String, into buf: UnsafeMutableRawBufferPointer) {
    guard buf.count > 0 else { return }
    var bytes = Array(s.utf8)
    if bytes.count > buf.count - 1 {
        bytes.removeSubrange((buf.count - 1)...)
        // Never leave half a UTF-8 character at the cut.
        var start = bytes.count
        while start > 0 && bytes[start - 1] & 0xC0 == 0x80 { start -= 1 }
        if start > 0 && bytes[start - 1] & 0x80 != 0 {
            let lead = bytes[start - 1]
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
            if bytes.count - (start - 1) < length { bytes.removeSubrange((start - 1)...) }
        }
    }
    buf.copyBytes(from: bytes)
    buf[bytes.count] = 0
}

/// A failed store call: ABI status, stable code, message for people.
public struct StoreFailure: Error, Sendable {
    public var status: pylon_status
    public var code: String
    public var message: String

    public init(_ status: pylon_status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}

/// Calls a store call's `done` exactly once: with `failure`, or with a result summary.
public func completeStoreCall(_ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?, _ failure: StoreFailure?,
                              rowsAffected: Int64 = 0, lastID: Int64 = 0) {
    guard let done else { return }
    if let failure {
        var e = pylon_error()
        e.struct_size = UInt32(MemoryLayout<pylon_error>.size)
        fillError(&e, failure.status, failure.code, failure.message)
        done(ctx, failure.status, nil, &e)
    } else {
        var r = pylon_exec_result()
        r.struct_size = UInt32(MemoryLayout<pylon_exec_result>.size)
        r.rows_affected = rowsAffected
        r.last_insert_id = lastID
        done(ctx, PYLON_OK, &r, nil)
    }
}

/// Builds the static descriptor `pylon_plugin_entry` returns. Call once (from a global
/// initializer); the memory lives for the process, as the ABI requires.
public func makeDescriptor(
    id: String, version: String, description: String, capabilities: [String],
    create: @escaping @convention(c) (UnsafePointer<pylon_host_v1>?, UnsafePointer<CChar>?, Int,
                                      UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<pylon_error>?) -> pylon_status,
    destroy: @escaping @convention(c) (OpaquePointer?) -> Void,
    getInterface: @escaping @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> UnsafeRawPointer?
) -> UnsafeMutablePointer<pylon_plugin_descriptor> {
    let caps = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(capabilities.count, 1))
    for (i, c) in capabilities.enumerated() { caps[i] = UnsafePointer(strdup(c)) }
    let d = UnsafeMutablePointer<pylon_plugin_descriptor>.allocate(capacity: 1)
    d.initialize(to: pylon_plugin_descriptor())
    d.pointee.struct_size = UInt32(MemoryLayout<pylon_plugin_descriptor>.size)
    d.pointee.abi_major = UInt32(PYLON_ABI_MAJOR)
    d.pointee.abi_minor = UInt32(PYLON_ABI_MINOR)
    d.pointee.abi_header_hash = UInt32(PYLON_ABI_HEADER_HASH)
    d.pointee.sizeof_pointer = UInt32(MemoryLayout<UnsafeRawPointer>.size)
    d.pointee.sizeof_value = UInt32(MemoryLayout<pylon_value>.size)
    d.pointee.sizeof_error = UInt32(MemoryLayout<pylon_error>.size)
    d.pointee.sizeof_host = UInt32(MemoryLayout<pylon_host_v1>.size)
    d.pointee.plugin_id = UnsafePointer(strdup(id))
    d.pointee.plugin_version = UnsafePointer(strdup(version))
    d.pointee.description = UnsafePointer(strdup(description))
    d.pointee.capabilities = UnsafePointer(caps)
    d.pointee.capability_count = UInt32(capabilities.count)
    d.pointee.create = create
    d.pointee.destroy = destroy
    d.pointee.get_interface = getInterface
    return d
}

/// A whole typical `create`: checks the arguments, lets `make` build the instance from the
/// host table and the config bytes (borrowed: copy what you keep), and hands the instance to
/// the host (`Handle.retain`; take it back in `destroy` with `Handle.release`).
public func createInstance<T: AnyObject>(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafeMutablePointer<pylon_error>?,
    _ make: (UnsafePointer<pylon_host_v1>, [UInt8]) -> Result<T, StoreFailure>
) -> pylon_status {
    out?.pointee = nil
    guard let host, let out else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "create called without host table or out pointer")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let bytes = config.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    switch make(host, bytes) {
    case let .failure(f):
        fillError(err, f.status, f.code, f.message)
        return f.status
    case let .success(instance):
        out.pointee = Handle.retain(instance)
        return PYLON_OK
    }
}

/// A whole typical store `open`: checks the arguments, lets `make` open a connection for the
/// instance (`I`, as handed out by `createInstance`; `writable` = PYLON_STORE_OPEN_WRITE) and
/// hands it to the host (`Handle.retain`; take it back in `close` with `Handle.release`).
public func openConnection<I: AnyObject, C: AnyObject>(
    _ instance: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ err: UnsafeMutablePointer<pylon_error>?, as _: I.Type,
    _ make: (I, _ writable: Bool) -> Result<C, StoreFailure>
) -> pylon_status {
    out?.pointee = nil
    guard let instance, let out else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "open called without instance or out pointer")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    switch make(Handle.borrow(instance, as: I.self), mode == PYLON_STORE_OPEN_WRITE) {
    case let .failure(f):
        fillError(err, f.status, f.code, f.message)
        return f.status
    case let .success(conn):
        out.pointee = Handle.retain(conn)
        return PYLON_OK
    }
}

/// The shape of `execute_batch` and `commit_batch`.
public typealias StoreBatchFn = @convention(c) (OpaquePointer?, UnsafePointer<pylon_statement>?, Int, UnsafePointer<pylon_row_sink>?,
                                               pylon_store_done_fn?, UnsafeMutableRawPointer?) -> Void

/// The shape of `backup` (ABI 1.8).
public typealias StoreBackupFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<pylon_error>?) -> pylon_status

/// The shape of `restore` (ABI 1.8).
public typealias StoreRestoreFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int,
                                                  UnsafeMutablePointer<pylon_error>?) -> pylon_status

/// Builds a static `pylon.store/1` table (the host reads it for the life of the process).
/// `waitNotify` and `describe` are the optional ABI 1.1 slots, `executeBatch` the 1.3 one,
/// `commitBatch` the 1.5 one, `backup` and `restore` the 1.8 ones.
public func makeStoreTable(
    flags: UInt32, dialect: String, maxReaders: UInt32,
    open: @escaping @convention(c) (OpaquePointer?, Int32, UnsafeMutablePointer<OpaquePointer?>?,
                                    UnsafeMutablePointer<pylon_error>?) -> pylon_status,
    close: @escaping @convention(c) (OpaquePointer?) -> Void,
    execute: @escaping @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int, UnsafePointer<pylon_value>?, Int,
                                       UnsafePointer<pylon_row_sink>?, pylon_store_done_fn?, UnsafeMutableRawPointer?) -> Void,
    transaction: @escaping @convention(c) (OpaquePointer?, Int32, pylon_store_done_fn?, UnsafeMutableRawPointer?) -> Void,
    waitNotify: (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<pylon_error>?) -> pylon_status)? = nil,
    describe: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Int)? = nil,
    executeBatch: StoreBatchFn? = nil,
    commitBatch: StoreBatchFn? = nil,
    backup: StoreBackupFn? = nil,
    restore: StoreRestoreFn? = nil
) -> UnsafeMutablePointer<pylon_store_v1> {
    let t = UnsafeMutablePointer<pylon_store_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_store_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_store_v1>.size)
    t.pointee.flags = flags
    t.pointee.dialect = UnsafePointer(strdup(dialect))
    t.pointee.max_readers = maxReaders
    t.pointee.open = open
    t.pointee.close = close
    t.pointee.execute = execute
    t.pointee.transaction = transaction
    t.pointee.wait_notify = waitNotify
    t.pointee.describe = describe
    t.pointee.execute_batch = executeBatch
    t.pointee.commit_batch = commitBatch
    t.pointee.backup = backup
    t.pointee.restore = restore
    return t
}

/// Logging through the host table. Holds the borrowed table pointer, valid until the
/// plugin instance is destroyed (ABI lifetime of `pylon_host_v1`). [any-thread]
public struct HostLog: @unchecked Sendable {
    public let host: UnsafePointer<pylon_host_v1>

    public init(_ host: UnsafePointer<pylon_host_v1>) { self.host = host }

    public func callAsFunction(_ level: Int32, _ message: String) {
        var m = message
        m.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { c in
                host.pointee.log?(host.pointee.host_ctx, level, c.baseAddress, c.count)
            }
        }
    }
}

/// Swift object ↔ opaque handle for instances and connections: `retain` hands ownership
/// to the C side, `release` takes it back (from `destroy` / `close`), `borrow` uses it.
public enum Handle {
    public static func retain<T: AnyObject>(_ object: T) -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(object).toOpaque())
    }

    public static func borrow<T: AnyObject>(_ handle: OpaquePointer, as: T.Type = T.self) -> T {
        Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    public static func release<T: AnyObject>(_ handle: OpaquePointer, as: T.Type = T.self) -> T {
        Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeRetainedValue()
    }
}

/// Fills a `pylon_store_v1.describe` buffer: at most `cap` bytes including the NUL;
/// returns the length written without the NUL (0 when there is no buffer).
public func writeDescription(_ text: String, into buf: UnsafeMutablePointer<CChar>?, capacity cap: Int) -> Int {
    guard let buf, cap > 0 else { return 0 }
    let bytes = Array(text.utf8.prefix(cap - 1))
    bytes.withUnsafeBufferPointer { src in
        if let base = src.baseAddress { UnsafeMutableRawPointer(buf).copyMemory(from: base, byteCount: src.count) }
    }
    buf[bytes.count] = 0
    return bytes.count
}

/// The host's event-loop slots (ABI 1.6: `loop_count`, `current_loop`, `watch_fd`,
/// `unwatch_fd`), present only when the host's table has all four.
public struct HostEventLoops: @unchecked Sendable {
    public let host: UnsafePointer<pylon_host_v1>
    public typealias OnData = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int) -> Void
    public typealias OnClose = @convention(c) (UnsafeMutableRawPointer?, pylon_status) -> Void

    public init?(_ host: UnsafePointer<pylon_host_v1>) {
        let end = MemoryLayout<pylon_host_v1>.offset(of: \.unwatch_fd)! + MemoryLayout<UnsafeRawPointer>.size
        let t = host.pointee
        guard Int(t.struct_size) >= end, t.loop_count != nil, t.current_loop != nil, t.watch_fd != nil, t.unwatch_fd != nil
        else { return nil }
        self.host = host
    }

    /// How many loops the host runs (at least 1).
    public var count: Int { max(1, Int(host.pointee.loop_count(host.pointee.host_ctx))) }
    /// The calling thread's loop, -1 when it is not one of them.
    public func current() -> Int { Int(host.pointee.current_loop(host.pointee.host_ctx)) }

    /// Hands `fd` to loop `loop` (see `watch_fd` for ownership); nil: still the caller's.
    public func watch(fd: Int32, loop: Int, onData: OnData, onClose: OnClose, ctx: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        host.pointee.watch_fd(host.pointee.host_ctx, fd, Int32(loop), onData, onClose, ctx)
    }

    /// Gives a `watch` handle back, exactly once.
    public func unwatch(_ handle: UnsafeMutableRawPointer) {
        host.pointee.unwatch_fd(host.pointee.host_ctx, handle)
    }
}

/// A whole typical `backup` slot (ABI 1.8): checks the arguments, lets `body` back the
/// instance (`I`) up into the path, and reports its failure through `err`.
public func backupCall<I: AnyObject>(
    _ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<pylon_error>?, as _: I.Type,
    _ body: (I, _ path: String) -> StoreFailure?
) -> pylon_status {
    guard let instance, let path else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "backup called without instance or path")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    return outcome(body(Handle.borrow(instance, as: I.self), String(cString: path)), err)
}

/// A whole typical `restore` slot (ABI 1.8): checks the arguments, copies the host's SQL and
/// lets `body` restore the instance (`I`) from the path.
public func restoreCall<I: AnyObject>(
    _ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
    _ err: UnsafeMutablePointer<pylon_error>?, as _: I.Type, _ body: (I, _ path: String, _ afterSQL: String) -> StoreFailure?
) -> pylon_status {
    guard let instance, let path else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "restore called without instance or path")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let after = sql.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: sqlLen), as: UTF8.self) } ?? ""
    return outcome(body(Handle.borrow(instance, as: I.self), String(cString: path), after), err)
}

private func outcome(_ failure: StoreFailure?, _ err: UnsafeMutablePointer<pylon_error>?) -> pylon_status {
    guard let failure else { return PYLON_OK }
    fillError(err, failure.status, failure.code, failure.message)
    return failure.status
}

/// Files a backup or restore writes: in place only when complete.
public enum BackupFiles {
    /// A fresh name in the folder of `path` (so the final rename stays on one file system).
    public static func partialPath(for path: String) -> String {
        let (dir, file) = split(path)
        return "\(dir)/.\(file).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Renames `from` over `to` and syncs the folder, so the rename survives a crash.
    public static func moveIntoPlace(_ from: String, _ to: String, what: String) -> StoreFailure? {
        guard rename(from, to) == 0 else {
            return StoreFailure(PYLON_ERR_IO, "IO_ERROR", "cannot move the \(what) into place at \(to): \(String(cString: strerror(errno)))")
        }
        let fd = open(split(to).folder, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        return nil
    }

    /// The folder ("." when none is given) and the file name of `path`.
    private static func split(_ path: String) -> (folder: String, file: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }
}
