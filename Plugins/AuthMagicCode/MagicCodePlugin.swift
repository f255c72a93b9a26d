import CCurl
import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The AuthMagicCode plugin: `pylon.auth.code/1`. One-time codes and links (`Secrets`) and
/// the mail that carries them (`Mailer`). It keeps no records itself: the host stores the
/// state `issue` and `check` return (see the table in pylon_plugin.h), so every host on
/// one database sees the same codes.
final class MagicCodeInstance {
    let secrets: Secrets
    let mailer: Mailer
    let config: CodeConfig

    init(config: CodeConfig, log: HostLog) {
        self.config = config
        secrets = Secrets(config: config)
        mailer = Mailer(config: config, log: log)
    }
}

// MARK: - Static descriptor and table

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.auth.magiccode", version: "0.1.0",
    description: "one-time email codes and links (hashed, attempt-limited) delivered by SMTP, HTTP email APIs or the log",
    capabilities: [PYLON_CAP_AUTH_CODE],
    create: codeCreate, destroy: codeDestroy, getInterface: codeGetInterface)

nonisolated(unsafe) private let codeTable: UnsafeMutablePointer<pylon_auth_code_v1> = {
    let t = UnsafeMutablePointer<pylon_auth_code_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_auth_code_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_auth_code_v1>.size)
    t.pointee.issue = codeIssue
    t.pointee.check = codeCheck
    t.pointee.locate = codeLocate
    t.pointee.send = codeSend
    return t
}()

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func codeCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<MagicCodeInstance, StoreFailure> in
        switch CodeConfig.parse(bytes) {
        case let .failure(problem):
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.auth.magiccode: \(problem.message)"))
        case let .success(cfg):
            guard pylon_curl_global_once() != 0 else {
                return .failure(StoreFailure(PYLON_ERR_GENERIC, "CURL_INIT_FAILED", "pylon.auth.magiccode: curl_global_init failed"))
            }
            let log = HostLog(host)
            log(PYLON_LOG_INFO, "auth.code: email by \(cfg.describe), from \(cfg.from)")
            if case .console = cfg.transport, !cfg.dev {
                log(PYLON_LOG_WARN, "auth.code: PYLON_EMAIL_PROVIDER is not set, so sign-in codes and links are written to this log instead of being emailed; set it (smtp, sendgrid, resend, stack0, webhook) in production")
            }
            return .success(MagicCodeInstance(config: cfg, log: log))
        }
    }
}

private func codeDestroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    Handle.release(instance, as: MagicCodeInstance.self).mailer.stop()
}

private func codeGetInterface(_ instance: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard instance != nil, let id, strcmp(id, PYLON_CAP_AUTH_CODE) == 0 else { return nil }
    return UnsafeRawPointer(codeTable)
}

// MARK: - pylon.auth.code/1

/// The request's text fields, or nil (reported) when the call is malformed.
private func readRequest(_ instance: OpaquePointer?, _ req: UnsafePointer<pylon_code_request>?, _ err: UnsafePointer<pylon_error_sink>?)
    -> (MagicCodeInstance, pylon_code_request)? {
    guard let instance, let req, Int(req.pointee.struct_size) >= MemoryLayout<pylon_code_request>.size,
          req.pointee.kind == PYLON_CODE_KIND_CODE || req.pointee.kind == PYLON_CODE_KIND_LINK else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "pylon.auth.code: a request needs the instance, a whole pylon_code_request and a known kind")
        return nil
    }
    return (Handle.borrow(instance, as: MagicCodeInstance.self), req.pointee)
}

private func bytes(_ s: pylon_str) -> [UInt8] {
    guard let p = s.ptr, s.len > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: s.len))
}

private func text(_ s: pylon_str) -> String { String(decoding: bytes(s), as: UTF8.self) }

/// Hands `value` to the caller's JSON callback; PYLON_OK.
private func answer(_ value: JSONValue, _ out: pylon_code_json_fn?, _ ctx: UnsafeMutableRawPointer?) -> pylon_status {
    let json = JSONWriter.encode(value)
    json.withUnsafeBufferPointer { b in
        b.withMemoryRebound(to: CChar.self) { out?(ctx, $0.baseAddress, $0.count) }
    }
    return PYLON_OK
}

private func codeIssue(_ instance: OpaquePointer?, _ req: UnsafePointer<pylon_code_request>?, _ out: pylon_code_json_fn?,
                       _ ctx: UnsafeMutableRawPointer?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let (inst, r) = readRequest(instance, req, err) else { return PYLON_ERR_INVALID_ARGUMENT }
    return answer(inst.secrets.issue(kind: r.kind, purpose: text(r.purpose), prior: text(r.state), now: r.now_unix), out, ctx)
}

private func codeCheck(_ instance: OpaquePointer?, _ req: UnsafePointer<pylon_code_request>?, _ out: pylon_code_json_fn?,
                       _ ctx: UnsafeMutableRawPointer?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let (inst, r) = readRequest(instance, req, err) else { return PYLON_ERR_INVALID_ARGUMENT }
    return answer(inst.secrets.check(state: text(r.state), presented: bytes(r.presented), now: r.now_unix), out, ctx)
}

private func codeLocate(_ instance: OpaquePointer?, _ token: UnsafePointer<CChar>?, _ len: Int, _ out: pylon_code_json_fn?,
                        _ ctx: UnsafeMutableRawPointer?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    let given = token.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    return answer(.object([("key", Secrets.locate(given).map { .string($0) } ?? .null)]), out, ctx)
}

private func codeSend(_ instance: OpaquePointer?, _ email: UnsafePointer<pylon_code_email>?, _ done: pylon_code_sent_fn?,
                      _ doneCtx: UnsafeMutableRawPointer?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let instance, let email, let done, Int(email.pointee.struct_size) >= MemoryLayout<pylon_code_email>.size else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "pylon.auth.code: send needs the instance, a whole pylon_code_email and a callback")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let inst = Handle.borrow(instance, as: MagicCodeInstance.self)
    let to = text(email.pointee.to), kind = text(email.pointee.template_id)
    guard EmailText.isPlainAddress(to) else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_EMAIL", "pylon.auth.code: the recipient is not a plain address")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let vars = (try? JSONParser.parse(bytes(email.pointee.vars_json))) ?? .object([])
    guard let (subject, body) = EmailTemplates.render(kind, vars: vars, config: inst.config) else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "UNKNOWN_TEMPLATE", "pylon.auth.code: no email template \"\(kind)\"; use one of \(EmailTemplates.kinds.joined(separator: ", "))")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    guard inst.mailer.enqueue(Mailer.Job(to: to, subject: subject, body: body, done: done, doneCtx: doneCtx)) else {
        fillError(err, PYLON_ERR_BUSY, "EMAIL_QUEUE_FULL", "pylon.auth.code: \(inst.config.queueLimit) emails are waiting to be sent; try again shortly")
        return PYLON_ERR_BUSY
    }
    return PYLON_OK
}
