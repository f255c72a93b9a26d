import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// What the pool knows about one function, from the workers' `ready` frames.
struct FnMeta {
    var kind: Int32
    /// `pylon_fn_info.flags`: PYLON_FN_FLAG_PRIVILEGED, PYLON_FN_FLAG_ENFORCE_POLICIES.
    var flags: UInt32
}

/// One call between `start_call` and `complete`.
final class Call: @unchecked Sendable {
    let key: String
    let ctx: UnsafeMutableRawPointer?
    let frame: [UInt8]
    let deadline: Double
    var worker: Worker?
    /// Serializes this call's host callbacks: no `db_call`/`stream` overlaps or follows
    /// `complete` (the ABI's promise to the host).
    let lock = NSLock()
    var finished = false

    init(key: String, ctx: UnsafeMutableRawPointer?, frame: [UInt8], deadline: Double) {
        self.key = key
        self.ctx = ctx
        self.frame = frame
        self.deadline = deadline
    }
}

/// Supervises `workers` Bun children speaking NDJSON over stdio, multiplexed: any number
/// of calls per child, matched by `call_id`, database replies by `op_id`. Calls go to the
/// ready child with the fewest calls in flight, or wait for one. A call past its deadline
/// fails with FUNCTION_TIMEOUT and its child is killed (the child's other calls fail with
/// WORKER_CRASHED); a child that exits is respawned with backoff. Nothing a child writes
/// can crash the host: unparseable lines are logged and skipped.
final class WorkerPool: @unchecked Sendable {
    let bun: String
    let runtimeScript: String
    let functionsDir: String
    let callTimeout: Double
    let log: HostLog
    var host: UnsafePointer<pylon_fn_host_v1>?
    /// The host's event loops read the children's stdout when it offers them (ABI 1.6);
    /// nil: a thread per child does.
    let loops: HostEventLoops?

    private let lock = NSCondition()
    private var workers: [Worker] = []
    private var calls: [String: Call] = [:]
    private var queued: [Call] = []
    /// What the workers' `ready` frames reported, under `registryLock` (read on every call,
    /// written when a worker becomes ready: kept apart from the pool lock).
    private let registryLock = NSLock()
    private var registry: [String: FnMeta] = [:]
    private var listJSON: [UInt8] = Array("[]".utf8)
    /// A worker has been ready at least once (pool lock).
    private var everReady = false
    /// The same, under `registryLock`.
    private var registryFilled = false
    private var stopping = false
    private var nextCall: UInt64 = 0
    private var supervisor: Thread?
    static let readyTimeout = 10.0

    /// Kill a child whose resident memory exceeds this many bytes (0: no limit).
    let maxRSS: Int
    /// Reload the children when files in the functions folder change (`--dev`).
    let watch: Bool
    /// Run the children under SCHED_BATCH (see `withSpawnPolicy`).
    let batchScheduling: Bool
    private var lastScan: Double = 0
    private var signature: [String]?
    /// The `fn_workers_ready` gauge as last set (pool lock).
    private var publishedReady = -1

    init(bun: String, runtimeScript: String, functionsDir: String, workers count: Int, callTimeout: Double,
         maxRSSMB: Int, watch: Bool, batchScheduling: Bool, loops: HostEventLoops?, log: HostLog) {
        self.loops = loops
        self.batchScheduling = batchScheduling
        self.maxRSS = maxRSSMB << 20
        self.watch = watch
        self.bun = bun
        self.runtimeScript = runtimeScript
        self.functionsDir = functionsDir
        self.callTimeout = callTimeout
        self.log = log
        workers = (0..<count).map { Worker(index: $0) }
        if let loops {
            let n = loops.count
            for w in workers { w.loop = w.index % n }
        }
    }

    /// Spawns the children and waits (up to 10 s) until each has reported its functions,
    /// so the host starts serving with the whole pool.
    func start() {
        lock.lock()
        for w in workers { spawn(w) }
        lock.unlock()
        let t = Thread { [self] in supervise() }
        t.name = "pylon-fnbun-supervisor"
        supervisor = t
        t.start()
        lock.lock()
        let until = Date().addingTimeInterval(Self.readyTimeout)
        while !workers.allSatisfy(\.isReady) && !stopping && Date() < until { _ = lock.wait(until: until) }
        let ok = everReady
        lock.unlock()
        if !ok { log(PYLON_LOG_ERROR, "fnbun: no Bun worker became ready within \(Int(Self.readyTimeout)) s; calls wait for one") }
    }

    func stop() {
        lock.lock()
        stopping = true
        let ws = workers
        lock.unlock()
        for w in ws {
            w.writeLock.lock()
            w.closeStdin()
            w.writeLock.unlock()
            if w.pid > 0 { kill(w.pid, SIGKILL) }
        }
        lock.lock()
        lock.broadcast()
        lock.unlock()
    }

    // MARK: Registry

    enum Lookup { case found(FnMeta), missing, starting }

    func describe(_ name: String) -> Lookup {
        registryLock.lock()
        defer { registryLock.unlock() }
        if let m = registry[name] { return .found(m) }
        return registryFilled ? .missing : .starting
    }

    func list() -> [UInt8] {
        registryLock.lock()
        defer { registryLock.unlock() }
        return listJSON
    }

    // MARK: Calls

    /// `request` (a webhook's HTTP request, JSON) becomes the frame's `request`; empty: none.
    func startCall(name: String, kind: Int32, args: [UInt8], auth: [UInt8], request: [UInt8], ctx: UnsafeMutableRawPointer?) {
        let here = loops?.current() ?? -1
        lock.lock()
        nextCall += 1
        let key = "c_\(nextCall)"
        // Built as bytes: this runs once per call, on the caller's event loop.
        var frame: [UInt8] = []
        frame.reserveCapacity(96 + name.utf8.count + args.count + auth.count + request.count)
        frame.append(contentsOf: #"{"type":"call","call_id":""#.utf8)
        frame.append(contentsOf: key.utf8)
        frame.append(contentsOf: #"","fn_name":"#.utf8)
        frame.append(contentsOf: JSONWriter.encode(.string(name)))
        frame.append(contentsOf: #","fn_type":""#.utf8)
        frame.append(contentsOf: kindName(kind).utf8)
        frame.append(contentsOf: #"","args":"#.utf8)
        if args.isEmpty { frame.append(contentsOf: "{}".utf8) } else { appendOneLine(&frame, args) }
        frame.append(contentsOf: #","auth":"#.utf8)
        if auth.isEmpty { frame.append(contentsOf: "{}".utf8) } else { appendOneLine(&frame, auth) }
        if !request.isEmpty {
            frame.append(contentsOf: #","request":"#.utf8)
            appendOneLine(&frame, request)
        }
        frame.append(contentsOf: "}\n".utf8)
        let call = Call(key: key, ctx: ctx, frame: frame, deadline: monotonicSeconds() + callTimeout)
        calls[key] = call
        let target = pickWorker(near: here)
        if let target {
            target.inflight.insert(key)
            call.worker = target
        } else {
            queued.append(call)
        }
        let gen = target?.generation
        lock.unlock()
        target?.send(frame, generation: gen)
    }

    /// The ready child with the fewest calls in flight — preferring the least busy child
    /// read by event loop `loop` (the caller's) while it is idle, or answering and within
    /// `affinitySlack` calls of that one: its replies then complete the call on the thread
    /// that answers the request, with no wake-up of another thread. A child that has calls
    /// but has finished none for `stallAfter` (one handler spinning: a Bun child runs one
    /// piece of JavaScript at a time) gets calls only as the least busy. Pool lock held.
    private func pickWorker(near loop: Int = -1) -> Worker? {
        var best: Worker?
        var local: Worker?
        for w in workers where w.isReady {
            if best == nil || w.inflight.count < best!.inflight.count { best = w }
            if loop >= 0, w.loop == loop, local == nil || w.inflight.count < local!.inflight.count { local = w }
        }
        guard let local, let best, local !== best else { return best }
        if local.inflight.isEmpty { return local }
        if local.inflight.count <= best.inflight.count + Self.affinitySlack, monotonicSeconds() - local.lastReturn < Self.stallAfter {
            return local
        }
        return best
    }

    static let affinitySlack = 8
    static let stallAfter = 0.02

    /// Completes a call exactly once; later attempts (a reply racing a timeout) are ignored.
    /// `from`: the child that answered, which must be the one running the call.
    func finish(_ key: String, _ status: pylon_status, result: ArraySlice<UInt8>?, code: String = "", message: String = "",
                from child: Worker? = nil) {
        lock.lock()
        if let child, !child.inflight.contains(key) {
            lock.unlock()
            return
        }
        guard let call = calls.removeValue(forKey: key) else {
            lock.unlock()
            return
        }
        call.worker?.inflight.remove(key)
        if call.worker == nil { queued.removeAll { $0 === call } }
        if let child { child.lastReturn = monotonicSeconds() }
        lock.unlock()
        call.lock.lock()
        defer { call.lock.unlock() }
        call.finished = true
        guard let host else { return }
        if status == PYLON_OK, let result {
            result.withUnsafeBytes { raw in
                host.pointee.complete(host.pointee.host_ctx, call.ctx, PYLON_OK,
                                      raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count, nil)
            }
        } else {
            var e = pylon_error()
            e.struct_size = UInt32(MemoryLayout<pylon_error>.size)
            fillError(&e, status == PYLON_OK ? PYLON_ERR_GENERIC : status, code, message)
            // The whole error too (ABI 1.4): a function's own code may not fit `e.code`.
            let whole = JSONWriter.encode(["code": .string(code), "message": .string(message)])
            whole.withUnsafeBytes { raw in
                host.pointee.complete(host.pointee.host_ctx, call.ctx, e.status, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count, &e)
            }
        }
    }

    // MARK: Children

    /// Starts a child for `w`. Pool lock held.
    private func spawn(_ w: Worker) {
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
        var pid: pid_t = 0
        let rc = withSpawnPolicy(batchScheduling) { posix_spawn(&pid, bun, &actions, &attr, cargs, environ) }
        for p in cargs { free(p) }
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
    private func checkMemory() { checkMemoryLocked(workers) }

    /// `--dev`: when a file in the functions folder changes, replace every child: each
    /// takes no new calls, finishes the ones it has, and exits; its successor loads the new
    /// code. Calls arriving meanwhile wait for a ready child. Pool lock held.
    private func checkForChanges() {
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

    private func backoff(_ failures: Int) -> Double {
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
            let kind: Int32 = switch str("fn_type") {
            case "query": PYLON_FN_QUERY
            case "mutation": PYLON_FN_MUTATION
            default: PYLON_FN_ACTION
            }
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

    private func activeCall(_ key: String) -> Call? {
        lock.lock()
        defer { lock.unlock() }
        return calls[key]
    }

    private func onReady(_ w: Worker, _ f: Frame) {
        let line = f.bytes
        var reg: [String: FnMeta] = [:]
        var list = Array("[]".utf8)
        if let r = f["functions"], case let .array(items)? = f.value("functions") {
            list = Array(line[r])
            for item in items {
                guard let name = item["name"]?.stringValue, let t = item["fn_type"]?.stringValue else { continue }
                let kind: Int32 = t == "query" ? PYLON_FN_QUERY : t == "mutation" ? PYLON_FN_MUTATION : PYLON_FN_ACTION
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
            t.inflight.insert(c.key)
            sends.append((t, c.frame, t.generation))
        }
        publishReady()
        lock.broadcast()
        lock.unlock()
        if first { log(PYLON_LOG_INFO, "fnbun: \(reg.count) function(s) from \(functionsDir): \(reg.keys.sorted().joined(separator: ", "))") }
        for (t, frame, gen) in sends { t.send(frame, generation: gen) }
    }

    private func onDB(_ w: Worker, _ gen: Int, _ f: Frame) {
        withActiveCall(w, gen, f) { host, call, ctx in
            f.bytes.withUnsafeBytes { raw in
                host.pointee.db_call(host.pointee.host_ctx, call.ctx, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count,
                                     dbDone, ctx)
            }
        }
    }

    private func onRunFn(_ w: Worker, _ gen: Int, _ f: Frame, name: String, kind: Int32, args: [UInt8]) {
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
    private func withActiveCall(_ w: Worker, _ gen: Int, _ f: Frame,
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

    // MARK: Supervision

    /// Sets the host gauge `fn_workers_ready` (children taking calls) when it changed.
    /// Pool lock held.
    private func publishReady() {
        let n = workers.reduce(0) { $0 + ($1.isReady ? 1 : 0) }
        guard n != publishedReady else { return }
        publishedReady = n
        let host = log.host
        let name = "fn_workers_ready"
        name.utf8CString.withUnsafeBufferPointer { c in
            host.pointee.gauge_set?(host.pointee.host_ctx, c.baseAddress, c.count - 1, Double(n))
        }
    }

    private func supervise() {
        lock.lock()
        while !stopping {
            _ = lock.wait(until: Date().addingTimeInterval(0.02))
            if stopping { break }
            let now = monotonicSeconds()
            // With the pid of the child running each, read now: it may be replaced later.
            var expired: [(call: Call, pid: pid_t?)] = []
            for c in calls.values where c.deadline <= now {
                expired.append((c, c.worker?.pid))
                // About to be killed: no new call may go to it (the reader respawns it).
                c.worker?.state = .stopped
            }
            if now - lastScan >= 0.5 {
                lastScan = now
                checkMemory()
                if watch { checkForChanges() }
            }
            for w in workers where w.draining && w.inflight.isEmpty {
                w.writeLock.lock()
                w.closeStdin() // the runtime exits on EOF
                w.writeLock.unlock()
            }
            for w in workers {
                switch w.state {
                case let .waiting(at) where at <= now: spawn(w)
                case let .starting(deadline) where deadline <= now:
                    log(PYLON_LOG_ERROR, "fnbun: worker \(w.index) sent no ready frame within \(Int(Self.readyTimeout)) s; killing it")
                    kill(w.pid, SIGKILL)
                    w.state = .stopped // the reader moves it to .waiting
                default: break
                }
            }
            publishReady()
            if expired.isEmpty { continue }
            lock.unlock()
            for (c, victim) in expired {
                finish(c.key, PYLON_ERR_BUSY, result: nil, code: "FUNCTION_TIMEOUT",
                       message: victim == nil
                           ? "no Bun worker was ready within \(callTimeout) s (PYLON_FN_CALL_TIMEOUT)"
                           : "the function ran longer than \(callTimeout) s (PYLON_FN_CALL_TIMEOUT); its worker was restarted")
                if let victim, victim > 0 { kill(victim, SIGKILL) }
            }
            lock.lock()
        }
        lock.unlock()
    }
}

extension WorkerPool {
    /// Kills children over the memory limit. Pool lock held.
    fileprivate func checkMemoryLocked(_ workers: [Worker]) {
        guard maxRSS > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        for w in workers where w.pid > 0 && w.killReason == nil {
            switch w.state {
            case .ready, .starting: break
            default: continue
            }
            guard let statm = try? String(contentsOfFile: "/proc/\(w.pid)/statm", encoding: .utf8) else { continue }
            let fields = statm.split(separator: " ")
            guard fields.count > 1, let pages = Int(fields[1]), pages * page > maxRSS else { continue }
            let mb = (pages * page) >> 20
            log(PYLON_LOG_ERROR, "fnbun: worker \(w.index) (pid \(w.pid)) uses \(mb) MiB, over the limit of \(maxRSS >> 20) MiB (PYLON_FN_MAX_RSS_MB); killing it")
            w.killReason = ("WORKER_MEMORY_LIMIT", "the Bun worker running this call used \(mb) MiB, over the limit of \(maxRSS >> 20) MiB (PYLON_FN_MAX_RSS_MB); it was restarted")
            w.state = .stopped
            kill(w.pid, SIGKILL)
        }
    }

    /// The functions folder's files with size and modification time, for change detection.
    fileprivate func folderSignature() -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: functionsDir)) ?? []).sorted()
        return names.map { name in
            var st = stat()
            let ok = stat("\(functionsDir)/\(name)", &st) == 0
            return ok ? "\(name):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : name
        }
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

func kindName(_ k: Int32) -> String {
    switch k {
    case PYLON_FN_QUERY: "query"
    case PYLON_FN_MUTATION: "mutation"
    default: "action"
    }
}
