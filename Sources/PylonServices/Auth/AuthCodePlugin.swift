import Foundation
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonJSON

/// The host's side of `pylon.auth.code/1` (pylon_plugin.h): the plugin's pure calls
/// (`issue`, `check`, `locate`; [bounded], so they may run on any thread, a store thread
/// included) and `send`, whose completion comes back on the plugin's thread.
package final class AuthCodePlugin: @unchecked Sendable {
    let table: UnsafePointer<pylon_auth_code_v1>
    let instance: OpaquePointer
    package let plugin: LoadedPlugin

    /// The bridge, or a startup error when the table is too small to hold the four slots.
    package init(_ served: ServedCapability) throws(HostError) {
        let size = served.table.load(as: UInt32.self)
        guard Int(size) >= MemoryLayout<pylon_auth_code_v1>.size else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(served.plugin.id) returned a pylon.auth.code/1 table of \(size) bytes, expected at least \(MemoryLayout<pylon_auth_code_v1>.size); rebuild it against this host's header")
        }
        table = served.table.assumingMemoryBound(to: pylon_auth_code_v1.self)
        let t = table.pointee
        guard t.issue != nil, t.check != nil, t.locate != nil, t.send != nil else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_MISSING",
                            message: "plugin \(served.plugin.id) left a required pylon.auth.code/1 slot NULL (issue, check, locate and send are all required); the plugin is broken")
        }
        instance = served.instance
        plugin = served.plugin
    }

    /// `issue` or `check`: the plugin's JSON answer.
    func call(_ slot: KeyPath<pylon_auth_code_v1, (@convention(c) (OpaquePointer?, UnsafePointer<pylon_code_request>?, pylon_code_json_fn?,
                                                                    UnsafeMutableRawPointer?, UnsafePointer<pylon_error_sink>?) -> pylon_status)?>,
              kind: Int32, purpose: String, state: String, presented: String = "", now: Int64) throws(HostError) -> JSONValue {
        let box = JSONAnswer()
        let err = PluginErrorCapture()
        let fn = table.pointee[keyPath: slot]
        let status = withStr(purpose) { p in
            withStr(state) { s in
                withStr(presented) { g in
                    var req = pylon_code_request(struct_size: UInt32(MemoryLayout<pylon_code_request>.size), kind: kind,
                                                 now_unix: now, purpose: p, state: s, presented: g)
                    return err.withSink { sink in fn?(instance, &req, jsonAnswer, Unmanaged.passUnretained(box).toOpaque(), sink) ?? PYLON_ERR_UNSUPPORTED }
                }
            }
        }
        return try box.result(status, err, plugin)
    }

    /// The lookup key of a link token, nil when it cannot be one.
    func locate(_ token: String) throws(HostError) -> String? {
        let box = JSONAnswer()
        let err = PluginErrorCapture()
        let status = withStr(token) { t in
            err.withSink { sink in table.pointee.locate!(instance, t.ptr, t.len, jsonAnswer, Unmanaged.passUnretained(box).toOpaque(), sink) }
        }
        return try box.result(status, err, plugin)["key"]?.stringValue
    }

    /// Delivers `template` to `to` with `vars`; returns when the transport accepted it.
    /// Throws 500 EMAIL_SEND_FAILED (or 503 when the plugin's queue is full).
    func send(template: String, to: String, vars: [(String, JSONValue)]) async throws {
        let json = JSONWriter.string(.object(vars))
        let done = SendCompletion()
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            done.continuation = c
            let err = PluginErrorCapture()
            let ctx = Unmanaged.passRetained(done).toOpaque()
            let status = withStr(template) { t in
                withStr(to) { r in
                    withStr(json) { v in
                        var email = pylon_code_email(struct_size: UInt32(MemoryLayout<pylon_code_email>.size), reserved: 0,
                                                     template_id: t, to: r, vars_json: v)
                        return err.withSink { table.pointee.send!(instance, &email, sendDone, ctx, $0) }
                    }
                }
            }
            if status != PYLON_OK {
                Unmanaged<SendCompletion>.fromOpaque(ctx).release()
                let e = err.failure(status, code: "EMAIL_SEND_FAILED", message: "the email plugin refused the message")
                c.resume(throwing: HostError(status: status == PYLON_ERR_BUSY ? 503 : 500, code: e.code, message: e.message))
            }
        }
    }
}

/// The JSON a plugin answered with, parsed; or the failure.
private final class JSONAnswer {
    var value: JSONValue?

    func result(_ status: pylon_status, _ err: PluginErrorCapture, _ plugin: LoadedPlugin) throws(HostError) -> JSONValue {
        guard status == PYLON_OK else {
            let e = err.failure(status, code: "AUTH_CODE_FAILED", message: "status \(status)")
            throw HostError(status: 500, code: e.code, message: "plugin \(plugin.id): \(e.message)")
        }
        guard let value else {
            throw HostError(status: 500, code: "AUTH_CODE_FAILED", message: "plugin \(plugin.id) answered without a result; the plugin is broken")
        }
        return value
    }
}

private let jsonAnswer: pylon_code_json_fn = { ctx, json, len in
    guard let ctx, let json else { return }
    let box = Unmanaged<JSONAnswer>.fromOpaque(ctx).takeUnretainedValue()
    box.value = try? JSONParser.parse(Array(UnsafeRawBufferPointer(start: json, count: min(len, 64 * 1024))))
}

/// Waits for one `send`'s completion.
private final class SendCompletion: @unchecked Sendable {
    var continuation: CheckedContinuation<Void, Error>?
}

private let sendDone: pylon_code_sent_fn = { ctx, status, err in
    guard let ctx else { return }
    let done = Unmanaged<SendCompletion>.fromOpaque(ctx).takeRetainedValue()
    if status == PYLON_OK {
        done.continuation?.resume()
    } else {
        let e = PluginError(status, err)
        done.continuation?.resume(throwing: HostError(status: 500, code: e.code.isEmpty ? "EMAIL_SEND_FAILED" : e.code,
                                                      message: e.message.isEmpty ? "the email could not be sent" : e.message))
    }
}

/// `s` as a borrowed `pylon_str` inside `body`.
private func withStr<R>(_ s: String, _ body: (pylon_str) -> R) -> R {
    var copy = s
    return copy.withUTF8 { b in
        b.withMemoryRebound(to: CChar.self) { c in body(pylon_str(ptr: c.baseAddress, len: c.count)) }
    }
}
