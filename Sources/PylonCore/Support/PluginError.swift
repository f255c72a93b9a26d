import PylonPluginABI

/// A plugin's error as the host keeps it: the status, the stable code and the message,
/// copied out of the plugin's (ptr, len) strings (`pylon_error`). Each is cut to a bound,
/// so no plugin can make the host copy, log or answer with unbounded text, and only what
/// the plugin's `struct_size` covers is read.
package struct PluginError: Sendable {
    package var status: pylon_status
    package var code: String
    package var message: String

    /// Longest code and message kept (bytes; a cut never splits a character).
    package static let maxCode = 256
    package static let maxMessage = 16 * 1024

    /// `err` as the plugin reported it with `status`; nil `err`: empty code and message.
    package init(_ status: pylon_status, _ err: UnsafePointer<pylon_error>?) {
        self.status = status
        code = ""
        message = ""
        guard let err else { return }
        let size = Int(err.pointee.struct_size)
        if size >= MemoryLayout<pylon_error>.offset(of: \pylon_error.code)! + MemoryLayout<pylon_str>.size {
            code = Self.text(err.pointee.code, limit: Self.maxCode)
        }
        if size >= MemoryLayout<pylon_error>.offset(of: \pylon_error.message)! + MemoryLayout<pylon_str>.size {
            message = Self.text(err.pointee.message, limit: Self.maxMessage)
        }
    }

    /// At most `limit` bytes of `s` (fewer at a character boundary), invalid UTF-8 replaced.
    package static func text(_ s: pylon_str, limit: Int) -> String {
        guard let p = s.ptr, s.len > 0 else { return "" }
        var n = min(s.len, limit)
        let bytes = UnsafeRawBufferPointer(start: p, count: n)
        if n < s.len { while n > 0 && bytes[n] & 0xC0 == 0x80 { n -= 1 } }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<n]), as: UTF8.self)
    }
}

/// Collects what a plugin reports through a `pylon_error_sink` during one synchronous call.
/// Lives in Core because every layer that calls a plugin (plugins, data, services) reads
/// its errors.
package final class PluginErrorCapture {
    /// The last error `set` reported (a plugin should report at most one per call).
    package var reported: PluginError?

    package init() {}

    /// A sink whose `ctx` is this object, valid inside `body` only.
    package func withSink<R>(_ body: (UnsafePointer<pylon_error_sink>) throws -> R) rethrows -> R {
        var sink = pylon_error_sink(struct_size: UInt32(MemoryLayout<pylon_error_sink>.size), reserved: 0,
                                    ctx: Unmanaged.passUnretained(self).toOpaque(), set: pluginErrorSet)
        return try withExtendedLifetime(self) { try withUnsafePointer(to: &sink) { try body($0) } }
    }

    /// The failure of a call that returned `status`: what the plugin reported, with the
    /// fallbacks for what it left out.
    package func failure(_ status: pylon_status, code fallbackCode: String, message fallbackMessage: String) -> PluginError {
        var e = reported ?? PluginError(status, nil)
        e.status = status
        if e.code.isEmpty { e.code = fallbackCode }
        if e.message.isEmpty { e.message = fallbackMessage }
        return e
    }
}

/// The sink's `set`: copies the plugin's error (bounded) into the capture.
private let pluginErrorSet: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<pylon_error>?) -> Void = { ctx, err in
    guard let ctx, let err else { return }
    let capture = Unmanaged<PluginErrorCapture>.fromOpaque(ctx).takeUnretainedValue()
    capture.reported = PluginError(err.pointee.status, err)
}

extension HostError {
    /// This error as a `pylon_error` for a plugin's completion callback (`db_call`,
    /// `run_fn`), with `status`; the strings are the host's, valid inside `body` only.
    package func withPluginError<R>(_ status: pylon_status, _ body: (UnsafePointer<pylon_error>) -> R) -> R {
        let bytes = Array(code.utf8) + Array(message.utf8)
        let codeLen = code.utf8.count
        return bytes.withUnsafeBufferPointer { all in
            let base = UnsafeRawPointer(all.baseAddress)?.assumingMemoryBound(to: CChar.self)
            var e = pylon_error(struct_size: UInt32(MemoryLayout<pylon_error>.size), status: status,
                                code: pylon_str(ptr: base, len: codeLen),
                                message: pylon_str(ptr: base.map { $0 + codeLen }, len: bytes.count - codeLen))
            return withUnsafePointer(to: &e) { body($0) }
        }
    }
}
