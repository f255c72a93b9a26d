import PylonPluginABI

#if canImport(Glibc)
import Glibc
#endif

/// Helpers for writing plugins in Swift against `pylon_plugin.h` (DESIGN.md §2): error
/// reporting, the static descriptor, store-call outcomes (and `executeEach` for a store that
/// runs statements one at a time), the host's event-loop service, and logging through the
/// host table. Linked statically into each plugin; the ABI stays the C header alone.

/// Reports `status`, `code` and `message` through a caller's `pylon_error_sink` (the
/// strings are borrowed for the duration of `set`, as the ABI says). A NULL sink is ignored.
public func fillError(_ err: UnsafePointer<pylon_error_sink>?, _ status: pylon_status, _ code: String, _ message: String) {
    guard let err, let set = err.pointee.set else { return }
    withError(status, code, message) { set(err.pointee.ctx, $0) }
}

/// Builds a `pylon_error` for `status`, `code` and `message`, valid inside `body` only (to
/// pass to a completion callback or a sink's `set`).
public func withError<R>(_ status: pylon_status, _ code: String, _ message: String,
                         _ body: (UnsafePointer<pylon_error>) -> R) -> R {
    var c = code
    var m = message
    return c.withUTF8 { cb in
        m.withUTF8 { mb in
            cb.withMemoryRebound(to: CChar.self) { cc in
                mb.withMemoryRebound(to: CChar.self) { mc in
                    var e = pylon_error(struct_size: UInt32(MemoryLayout<pylon_error>.size), status: status,
                                        code: pylon_str(ptr: cc.baseAddress, len: cc.count),
                                        message: pylon_str(ptr: mc.baseAddress, len: mc.count))
                    return withUnsafePointer(to: &e) { body($0) }
                }
            }
        }
    }
}

/// A `pylon_error`'s code or message as text (for plugins that read the host's errors).
public func errorText(_ s: pylon_str) -> String {
    guard let p = s.ptr, s.len > 0 else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: s.len), as: UTF8.self)
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

/// Ends a synchronous store call: PYLON_OK with the result summary filled (only the fields
/// the host's `struct_size` covers), or the failure reported through `err`.
public func storeOutcome(_ failure: StoreFailure?, _ err: UnsafePointer<pylon_error_sink>?,
                         result: UnsafeMutablePointer<pylon_exec_result>? = nil,
                         rowsAffected: Int64 = 0, lastID: Int64 = 0) -> pylon_status {
    if let failure {
        fillError(err, failure.status, failure.code, failure.message)
        return failure.status
    }
    if let result {
        let size = Int(result.pointee.struct_size)
        if size >= MemoryLayout<pylon_exec_result>.offset(of: \pylon_exec_result.rows_affected)! + 8 {
            result.pointee.rows_affected = rowsAffected
        }
        if size >= MemoryLayout<pylon_exec_result>.offset(of: \pylon_exec_result.last_insert_id)! + 8 {
            result.pointee.last_insert_id = lastID
        }
    }
    return PYLON_OK
}

/// One statement's outcome for `executeEach`: rows affected and last insert id.
public typealias StatementOutcome = Result<(rowsAffected: Int64, lastID: Int64), StoreFailure>

/// The whole `execute` slot for a store that runs statements one at a time (no round trips
/// to save): runs each with `one` (only the last gets `sink`), stops at the first failure,
/// then commits with `commit` when PYLON_EXEC_COMMIT is set (`commit` must leave no
/// transaction open when it fails).
public func executeEach(
    _ statements: UnsafePointer<pylon_statement>?, _ count: Int, _ flags: UInt32, _ sink: UnsafePointer<pylon_row_sink>?,
    _ result: UnsafeMutablePointer<pylon_exec_result>?, _ err: UnsafePointer<pylon_error_sink>?,
    one: (pylon_statement, UnsafePointer<pylon_row_sink>?) -> StatementOutcome, commit: () -> StoreFailure?
) -> pylon_status {
    guard count == 0 || statements != nil else {
        return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without statements"), err)
    }
    var last: (rowsAffected: Int64, lastID: Int64) = (0, 0)
    for i in 0..<count {
        switch one(statements![i], i == count - 1 ? sink : nil) {
        case let .failure(f): return storeOutcome(f, err)
        case let .success(r): last = r
        }
    }
    if flags & PYLON_EXEC_COMMIT != 0, let f = commit() { return storeOutcome(f, err) }
    return storeOutcome(nil, err, result: result, rowsAffected: last.rowsAffected, lastID: last.lastID)
}

/// A `pylon_statement`'s SQL as text.
public func statementSQL(_ s: pylon_statement) -> String {
    guard let p = s.sql else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: s.sql_len), as: UTF8.self)
}

/// Builds the static descriptor `pylon_plugin_entry` returns. Call once (from a global
/// initializer); the memory lives for the process, as the ABI requires.
public func makeDescriptor(
    id: String, version: String, description: String, capabilities: [String],
    create: @escaping @convention(c) (UnsafePointer<pylon_host_v1>?, UnsafePointer<CChar>?, Int,
                                      UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<pylon_error_sink>?) -> pylon_status,
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
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?,
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
/// instance (`I`, as handed out by `createInstance`; the mode is PYLON_STORE_OPEN_*) and
/// hands it to the host (`Handle.retain`; take it back in `close` with `Handle.release`).
public func openConnection<I: AnyObject, C: AnyObject>(
    _ instance: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ err: UnsafePointer<pylon_error_sink>?, as _: I.Type,
    _ make: (I, _ mode: Int32) -> Result<C, StoreFailure>
) -> pylon_status {
    out?.pointee = nil
    guard let instance, let out else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "open called without instance or out pointer")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    switch make(Handle.borrow(instance, as: I.self), mode) {
    case let .failure(f):
        fillError(err, f.status, f.code, f.message)
        return f.status
    case let .success(conn):
        out.pointee = Handle.retain(conn)
        return PYLON_OK
    }
}

/// The shape of `execute`.
public typealias StoreExecuteFn = @convention(c) (OpaquePointer?, UnsafePointer<pylon_statement>?, Int, UInt32,
                                                 UnsafePointer<pylon_row_sink>?, UnsafeMutablePointer<pylon_exec_result>?,
                                                 UnsafePointer<pylon_error_sink>?) -> pylon_status

/// The shape of `backup`.
public typealias StoreBackupFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<pylon_error_sink>?) -> pylon_status

/// The shape of `restore`.
public typealias StoreRestoreFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int,
                                                  UnsafePointer<pylon_error_sink>?) -> pylon_status

/// Builds a static `pylon.store/1` table (the host reads it for the life of the process).
/// `waitNotify`, `describe`, `backup` and `restore` are the optional slots.
public func makeStoreTable(
    flags: UInt32, dialect: String, maxReaders: UInt32,
    open: @escaping @convention(c) (OpaquePointer?, Int32, UnsafeMutablePointer<OpaquePointer?>?,
                                    UnsafePointer<pylon_error_sink>?) -> pylon_status,
    close: @escaping @convention(c) (OpaquePointer?) -> Void,
    execute: @escaping StoreExecuteFn,
    transaction: @escaping @convention(c) (OpaquePointer?, Int32, UnsafePointer<pylon_error_sink>?) -> pylon_status,
    waitNotify: (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafePointer<pylon_error_sink>?) -> pylon_status)? = nil,
    describe: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Int)? = nil,
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

/// The host's event loops (the optional host service "pylon.host.loops/1"), present only
/// when the host offers the service with all four functions.
public struct HostEventLoops: @unchecked Sendable {
    public let loops: UnsafePointer<pylon_host_loops_v1>
    public typealias OnData = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int) -> Void
    public typealias OnClose = @convention(c) (UnsafeMutableRawPointer?, pylon_status) -> Void

    public init?(_ host: UnsafePointer<pylon_host_v1>) {
        guard let get = host.pointee.get_service, let raw = get(host.pointee.host_ctx, PYLON_SERVICE_LOOPS) else { return nil }
        let table = raw.assumingMemoryBound(to: pylon_host_loops_v1.self)
        let t = table.pointee
        guard Int(t.struct_size) >= MemoryLayout<pylon_host_loops_v1>.size, t.loop_count != nil, t.current_loop != nil,
              t.watch_fd != nil, t.unwatch_fd != nil
        else { return nil }
        loops = table
    }

    /// How many loops the host runs (at least 1).
    public var count: Int { max(1, Int(loops.pointee.loop_count(loops.pointee.ctx))) }
    /// The calling thread's loop, -1 when it is not one of them.
    public func current() -> Int { Int(loops.pointee.current_loop(loops.pointee.ctx)) }

    /// Hands `fd` to loop `loop` (see `watch_fd` for ownership); nil: still the caller's.
    public func watch(fd: Int32, loop: Int, onData: OnData, onClose: OnClose, ctx: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        loops.pointee.watch_fd(loops.pointee.ctx, fd, Int32(loop), onData, onClose, ctx)
    }

    /// Gives a `watch` handle back, exactly once.
    public func unwatch(_ handle: UnsafeMutableRawPointer) {
        loops.pointee.unwatch_fd(loops.pointee.ctx, handle)
    }
}

/// A whole typical `backup` slot: checks the arguments, lets `body` back the
/// instance (`I`) up into the path, and reports its failure through `err`.
public func backupCall<I: AnyObject>(
    _ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafePointer<pylon_error_sink>?, as _: I.Type,
    _ body: (I, _ path: String) -> StoreFailure?
) -> pylon_status {
    guard let instance, let path else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "backup called without instance or path")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    return outcome(body(Handle.borrow(instance, as: I.self), String(cString: path)), err)
}

/// A whole typical `restore` slot: checks the arguments, copies the host's SQL and
/// lets `body` restore the instance (`I`) from the path.
public func restoreCall<I: AnyObject>(
    _ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
    _ err: UnsafePointer<pylon_error_sink>?, as _: I.Type, _ body: (I, _ path: String, _ afterSQL: String) -> StoreFailure?
) -> pylon_status {
    guard let instance, let path else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "restore called without instance or path")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let after = sql.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: sqlLen), as: UTF8.self) } ?? ""
    return outcome(body(Handle.borrow(instance, as: I.self), String(cString: path), after), err)
}

private func outcome(_ failure: StoreFailure?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
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

    /// Creates `path` empty and owner-only (0600); 0, or the errno (EEXIST when it exists,
    /// which it keeps as it is). A database or a backup holds session, API-key and password
    /// hashes, which the usual umask would leave world-readable (0644); created private,
    /// there is no moment at which anyone else may open it.
    public static func createOwnerOnly(_ path: String) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return errno }
        close(fd)
        return 0
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
