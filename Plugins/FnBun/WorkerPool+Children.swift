import Foundation
import PylonHostSettings
import PylonJSON
import PylonPluginABI
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// The pool's children: spawning one (with its pipes and scheduling policy), its exit and
/// the back-off before the next, and what it says (ready, db_call, run_fn, complete).
extension WorkerPool {
    /// Starts a child for `w`. Pool lock held.
    func spawn(_ w: Worker) {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard cloexecPipe(&toChild) else {
            w.state = .waiting(respawnAt: monotonicSeconds() + 1)
            return
        }
        guard cloexecPipe(&fromChild) else {
            close(toChild[0]); close(toChild[1])
            w.state = .waiting(respawnAt: monotonicSeconds() + 1)
            return
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = [bun, "run", "--no-install", runtimeScript, functionsDir]
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cenv: [UnsafeMutablePointer<CChar>?] = Self.workerEnvironment().map { strdup($0) } + [nil]
        var pid: pid_t = 0
        let rc = withSpawnPolicy(batchScheduling) { posix_spawn(&pid, bun, &actions, &attr, cargs, cenv) }
        for p in cargs { free(p) }
        for p in cenv { free(p) }
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attr)
        close(toChild[0])
        close(fromChild[1])
        if rc != 0 {
            close(toChild[1]); close(fromChild[0])
            log(PYLON_LOG_ERROR, "fnbun: cannot start \(bun): \(String(cString: strerror(rc)))")
            w.failures += 1
            w.state = .waiting(respawnAt: monotonicSeconds() + backoff(w.failures))
            return
        }
        // Sends never block the sender (often a host event loop): see `Worker.drainAndUnlock`.
        _ = fcntl(toChild[1], F_SETFL, fcntl(toChild[1], F_GETFL) | O_NONBLOCK)
        w.writeLock.lock()
        w.generation += 1
        w.stdinFD = toChild[1]
        w.writeLock.unlock()
        w.pid = pid
        w.state = .starting(deadline: monotonicSeconds() + Self.readyTimeout)
        let reader = ChildReader(pool: self, worker: w, generation: w.generation, pid: pid)
        liveReaders += 1
        let fd = fromChild[0]
        if let loops {
            let ctx = Unmanaged.passRetained(reader).toOpaque()
            if let handle = loops.watch(fd: fd, loop: w.loop, onData: childData, onClose: childClosed, ctx: ctx) {
                reader.adopt(handle)
                return
            }
            Unmanaged<ChildReader>.fromOpaque(ctx).release()
        }
        let t = Thread { [self] in
            reader.readLoop(fd)
            close(fd)
            childExited(reader)
        }
        t.name = "pylon-fnbun-worker-\(w.index)"
        t.start()
    }

    /// Pool lock held.
    func checkMemory() { checkMemoryLocked(workers) }

    /// `--dev`: when a file in the functions folder changes, replace every child: each
    /// takes no new calls, finishes the ones it has, and exits; its successor loads the new
    /// code. Calls arriving meanwhile wait for a ready child. Pool lock held.
    func checkForChanges() {
        let now = folderSignature()
        guard let before = signature else { signature = now; return }
        guard now != before else { return }
        signature = now
        log(PYLON_LOG_INFO, "fnbun: files in \(functionsDir) changed; reloading the workers")
        for w in workers {
            switch w.state {
            case .ready, .starting:
                w.draining = true
                w.state = .stopped
            default: break
            }
        }
    }

    /// The host's environment without its own settings (`HostSettings`: the admin token,
    /// JWT secret, API-key pepper, files secret, mail and OAuth secrets, `DATABASE_URL`,
    /// ...): `ctx.env` is the worker's `process.env`, and those are not the app's to read —
    /// a debugging `return ctx.env` gave the admin token to any caller.
    static func workerEnvironment() -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            if !HostSettings.isHostSetting(entry) { out.append(String(cString: entry)) }
            p += 1
        }
        return out
    }

    func backoff(_ failures: Int) -> Double {
        failures <= 1 ? 0 : min(0.1 * pow(2, Double(failures - 2)), 10)
    }

    /// A child's stdout has ended (it exited, was killed, or closed it): reap it, fail its
    /// calls in flight, schedule its successor. On a thread that may block (not a loop).
    func childExited(_ reader: ChildReader) {
        let w = reader.worker
        let generation = reader.generation
        let pid = reader.pid
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        lock.lock()
        w.writeLock.lock()
        if w.generation == generation { w.closeStdin() }
        w.writeLock.unlock()
        // Reaped: the number may now be another process's, which no later kill may reach.
        if w.pid == pid { w.pid = 0 }
        let orphans = w.inflight
        w.inflight.removeAll()
        let now = monotonicSeconds()
        let reason = w.killReason ?? ("WORKER_CRASHED", "the Bun worker running this call exited (crash, kill or a timeout of another call on it); retry the call")
        let reload = w.draining
        w.killReason = nil
        w.draining = false
        if reload || (w.isReady && now - w.readyAt > 5) { w.failures = 0 }
        if !reload { w.failures += 1 }
        w.state = stopping ? .stopped : .waiting(respawnAt: now + backoff(w.failures))
        publishReady()
        let quiet = stopping || reload
        lock.unlock()
        if !quiet { log(PYLON_LOG_WARN, "fnbun: worker \(w.index) (pid \(pid)) exited; \(orphans.count) call(s) in flight failed; respawning") }
        for key in orphans {
            finish(key, PYLON_ERR_CONNECTION, result: nil, code: reason.code, message: reason.message)
        }
        lock.lock()
        liveReaders -= 1
        lock.broadcast()
        lock.unlock()
    }

    func handleLine(_ w: Worker, _ gen: Int, _ line: [UInt8]) {
        guard let f = try? Frame(line), let type = f.string("type") else {
            log(PYLON_LOG_WARN, "fnbun: worker \(w.index) wrote a line that is not a protocol frame; skipped: \(String(decoding: line.prefix(200), as: UTF8.self))")
            return
        }
        func str(_ k: StaticString) -> String? { f.string(k) }
        switch type {
        case "ready": onReady(w, f)
        case "return":
            guard let key = str("call_id") else { return }
            finish(key, PYLON_OK, result: f["value"].map { line[$0] } ?? ArraySlice(Array("null".utf8)), from: w)
        case "error":
            guard let key = str("call_id") else { return }
            finish(key, PYLON_ERR_GENERIC, result: nil, code: str("code") ?? "HANDLER_ERROR", message: str("message") ?? "the function failed",
                   from: w)
        case "db": onDB(w, gen, f)
        case "run_fn":
            let kind = kindCode(str("fn_type"))
            let args = f["args"].map { Array(line[$0]) } ?? Array("{}".utf8)
            onRunFn(w, gen, f, name: str("fn_name") ?? "", kind: kind, args: args)
        case "stream":
            guard let key = str("call_id"), let call = activeCall(key), let host else { return }
            let event = Array((str("event") ?? "").utf8)
            let data = Array((str("data") ?? "").utf8)
            call.lock.lock()
            if !call.finished {
                event.withUnsafeBytes { e in
                    data.withUnsafeBytes { d in
                        host.pointee.stream(host.pointee.host_ctx, call.ctx, e.baseAddress?.assumingMemoryBound(to: CChar.self), e.count,
                                            d.baseAddress?.assumingMemoryBound(to: CChar.self), d.count)
                    }
                }
            }
            call.lock.unlock()
        case "schedule", "cancel_schedule":
            let key = str("call_id") ?? ""
            let reply: JSONValue = ["type": "result", "call_id": .string(key), "op_id": .string(str("op_id") ?? ""),
                                    "error": ["code": "NOT_IMPLEMENTED", "message": .string("\(type) is not supported by this host yet")]]
            w.send(JSONWriter.encode(reply) + [0x0A], generation: gen)
        default:
            log(PYLON_LOG_WARN, "fnbun: worker \(w.index) sent an unknown frame type \"\(type)\"; skipped")
        }
    }

    func activeCall(_ key: String) -> Call? {
        lock.lock()
        defer { lock.unlock() }
        return calls[key]
    }

    func onReady(_ w: Worker, _ f: Frame) {
        let line = f.bytes
        var reg: [String: FnMeta] = [:]
        var list = Array("[]".utf8)
        if let r = f["functions"], case let .array(items)? = f.value("functions") {
            list = Array(line[r])
            for item in items {
                guard let name = item["name"]?.stringValue, let t = item["fn_type"]?.stringValue else { continue }
                let kind = kindCode(t)
                func isTrue(_ key: String) -> Bool { item[key]?.boolValue == true }
                reg[name] = FnMeta(kind: kind, flags: (isTrue("privileged") ? PYLON_FN_FLAG_PRIVILEGED : 0)
                                       | (isTrue("enforce_policies") ? PYLON_FN_FLAG_ENFORCE_POLICIES : 0))
            }
        }
        registryLock.lock()
        registry = reg
        listJSON = list
        registryFilled = true
        registryLock.unlock()
        lock.lock()
        let first = !everReady
        everReady = true
        w.state = .ready
        w.readyAt = monotonicSeconds()
        var sends: [(Worker, [UInt8], Int)] = []
        while !queued.isEmpty, let t = pickWorker() {
            let c = queued.removeFirst()
            c.worker = t
            t.take(c.key)
            sends.append((t, c.frame, t.generation))
        }
        publishReady()
        lock.broadcast()
        lock.unlock()
        if first { log(PYLON_LOG_INFO, "fnbun: \(reg.count) function(s) from \(functionsDir): \(reg.keys.sorted().joined(separator: ", "))") }
        for (t, frame, gen) in sends { t.send(frame, generation: gen) }
    }

    func onDB(_ w: Worker, _ gen: Int, _ f: Frame) {
        withActiveCall(w, gen, f) { host, call, ctx in
            f.bytes.withUnsafeBytes { raw in
                host.pointee.db_call(host.pointee.host_ctx, call.ctx, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count,
                                     dbDone, ctx)
            }
        }
    }

    func onRunFn(_ w: Worker, _ gen: Int, _ f: Frame, name: String, kind: Int32, args: [UInt8]) {
        withActiveCall(w, gen, f) { host, call, ctx in
            let n = Array(name.utf8)
            n.withUnsafeBytes { nb in
                args.withUnsafeBytes { ab in
                    host.pointee.run_fn(host.pointee.host_ctx, call.ctx, nb.baseAddress?.assumingMemoryBound(to: CChar.self), nb.count,
                                        kind, ab.baseAddress?.assumingMemoryBound(to: CChar.self), ab.count, dbDone, ctx)
                }
            }
        }
    }

    /// Runs `body` with the call's host table while the call is known to be unfinished
    /// (holding its lock, so `complete` cannot overlap), handing it a retained reply
    /// context for `dbDone`; answers the child with CALL_FINISHED otherwise.
    /// The frame's `call_id` and `op_id` must be strings; the reply echoes them as sent.
    func withActiveCall(_ w: Worker, _ gen: Int, _ f: Frame,
                                _ body: (UnsafePointer<pylon_fn_host_v1>, Call, UnsafeMutableRawPointer) -> Void) {
        guard let key = f.string("call_id"), let rawKey = f["call_id"], let rawOp = f["op_id"],
              f.bytes[rawOp.lowerBound] == UInt8(ascii: "\"") else { return }
        let reply = DBReply(worker: w, generation: gen, callID: f.bytes[rawKey], opID: f.bytes[rawOp])
        // Only the child running a call may act for it.
        guard let call = activeCall(key), call.worker === w, let host else {
            reply.fail("CALL_FINISHED", "the call already finished")
            return
        }
        call.lock.lock()
        defer { call.lock.unlock() }
        if call.finished {
            reply.fail("CALL_FINISHED", "the call already finished")
            return
        }
        body(host, call, Unmanaged.passRetained(reply).toOpaque())
    }
}

/// Runs `spawn` with the calling thread under SCHED_BATCH when `batch`, so the child (and
/// every thread it starts) inherits that policy; the thread's own policy is put back after.
/// A SCHED_BATCH process is woken without preempting the thread that woke it: the host's
/// event loop that writes a call frame keeps its CPU and goes on writing the frames of
/// other requests, and the child, once it runs, finds them all in one read (likewise for
/// the answers it gets). Measured (bench/RESULTS.md, session 7): the workers' context
/// switches per call fell from 0.45 to 0.14 and their CPU per call by a quarter. Fairness
/// is unchanged: the child still gets its share of CPU. Unprivileged processes may switch between SCHED_OTHER and SCHED_BATCH; if the
/// switch fails the child simply keeps the normal policy.
private func withSpawnPolicy<T>(_ batch: Bool, _ spawn: () -> T) -> T {
    guard batch else { return spawn() }
    let before = sched_getscheduler(0)
    var param = sched_param()
    guard before >= 0, sched_setscheduler(0, schedBatch, &param) == 0 else { return spawn() }
    defer { _ = sched_setscheduler(0, before, &param) }
    return spawn()
}

/// SCHED_BATCH from <sched.h> (glibc declares it only under _GNU_SOURCE).
private let schedBatch: Int32 = 3

/// A pipe whose ends are not inherited by other children (posix_spawn's dup2 clears the
/// flag on the child's stdin/stdout copies).
private func cloexecPipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}
