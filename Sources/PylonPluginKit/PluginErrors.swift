import PylonPluginABI

/// Helpers for plugins written in Swift (DESIGN.md §2: optional, static, linked into each
/// plugin; the host never depends on it). Only C types cross the ABI, so these only fill
/// and call the header's structs.

/// Writes `status`, `code` and `message` into a caller-owned `pylon_error`, truncated to fit
/// and NUL-terminated.
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

/// A store call's failure: the ABI status, a stable code and a message saying what to do.
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

/// Calls a store completion exactly once: with a `pylon_exec_result` on success, with a
/// `pylon_error` on failure. Both live on this stack frame (valid during `done` only, as
/// the ABI promises the host).
public func completeStore(_ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?, _ failure: StoreFailure?,
                          rowsAffected: Int64 = 0, lastInsertID: Int64 = 0) {
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
        r.last_insert_id = lastInsertID
        done(ctx, PYLON_OK, &r, nil)
    }
}
