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
    /// The host's event loops read the children's stdout when it offers them
    /// ("pylon.host.loops/1");
    /// nil: a thread per child does.
    let loops: HostEventLoops?

    let lock = NSCondition()
    var workers: [Worker] = []
    var calls: [String: Call] = [:]
    var queued: [Call] = []
    /// What the workers' `ready` frames reported, under `registryLock` (read on every call,
    /// written when a worker becomes ready: kept apart from the pool lock).
    let registryLock = NSLock()
    var registry: [String: FnMeta] = [:]
    var listJSON: [UInt8] = Array("[]".utf8)
    /// A worker has been ready at least once (pool lock).
    var everReady = false
    /// The same, under `registryLock`.
    var registryFilled = false
    var stopping = false
    var nextCall: UInt64 = 0
    var supervisor: Thread?
    /// Readers whose `childExited` has not finished yet, and whether the supervisor still
    /// runs (pool lock): `stop` waits for both, since after `destroy` returns the plugin may
    /// no longer call the host.
    var liveReaders = 0
    var supervising = false
    static let readyTimeout = 10.0

    /// Kill a child whose resident memory exceeds this many bytes (0: no limit).
    let maxRSS: Int
    /// Reload the children when files in the functions folder change (`--dev`).
    let watch: Bool
    /// Run the children under SCHED_BATCH (see `withSpawnPolicy`).
    let batchScheduling: Bool
    var lastScan: Double = 0
    var signature: [String]?
    /// The `fn_workers_ready` gauge as last set (pool lock).
    var publishedReady = -1

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
        lock.lock()
        supervising = true
        lock.unlock()
        supervisor = t
        t.start()
        lock.lock()
        let until = Date().addingTimeInterval(Self.readyTimeout)
        while !workers.allSatisfy(\.isReady) && !stopping && Date() < until { _ = lock.wait(until: until) }
        let ok = everReady
        lock.unlock()
        if !ok { log(PYLON_LOG_ERROR, "fnbun: no Bun worker became ready within \(Int(Self.readyTimeout)) s; calls wait for one") }
    }

    /// Kills the children and returns once nothing of the pool will call the host again:
    /// each child's reader has reaped it and failed its calls, the supervisor has ended, and
    /// calls still waiting for a worker are failed with FUNCTIONS_STOPPED (each started call
    /// gets its one `complete`). Waits at most `stopTimeout` for the threads.
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
        let until = Date().addingTimeInterval(Self.stopTimeout)
        while (liveReaders > 0 || supervising) && Date() < until { _ = lock.wait(until: until) }
        let left = Array(calls.keys)
        lock.unlock()
        for key in left {
            finish(key, PYLON_ERR_CONNECTION, result: nil, code: "FUNCTIONS_STOPPED",
                   message: "the function runtime stopped (the host is shutting down) before this call ran; retry it")
        }
    }

    static let stopTimeout = 5.0

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
            target.take(key)
            call.worker = target
        } else {
            queued.append(call)
        }
        let gen = target?.generation
        let refused = stopping
        lock.unlock()
        target?.send(frame, generation: gen)
        if refused {
            finish(key, PYLON_ERR_CONNECTION, result: nil, code: "FUNCTIONS_STOPPED",
                   message: "the function runtime stopped (the host is shutting down) before this call ran; retry it")
        }
    }

    /// The ready child with the fewest calls in flight — preferring the least busy child
    /// read by event loop `loop` (the caller's) while it is idle, or answering and within
    /// `affinitySlack` calls of that one: its replies then complete the call on the thread
    /// that answers the request, with no wake-up of another thread. A child that has calls
    /// but has finished none for `stallAfter` (one handler spinning: a Bun child runs one
    /// piece of JavaScript at a time) gets calls only as the least busy, and one quiet for
    /// `stuckAfter` only when every ready child is (an outside probe: one spinning call
    /// made a stuck child the least busy, and the calls it got failed with it). Pool lock
    /// held.
    func pickWorker(near loop: Int = -1) -> Worker? {
        let now = monotonicSeconds()
        let stuck = { (w: Worker) in !w.inflight.isEmpty && now - w.quietSince > Self.stuckAfter }
        let anyFree = workers.contains { $0.isReady && !stuck($0) }
        var best: Worker?
        var local: Worker?
        for w in workers where w.isReady && !(anyFree && stuck(w)) {
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
    /// How long a child with calls in flight may finish none before new calls avoid it.
    static let stuckAfter = 1.0

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
        if let child {
            child.lastReturn = monotonicSeconds()
            child.quietSince = child.lastReturn
        }
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
            let failed = status == PYLON_OK ? PYLON_ERR_GENERIC : status
            withError(failed, code, message) { e in
                host.pointee.complete(host.pointee.host_ctx, call.ctx, failed, nil, 0, e)
            }
        }
    }
}

func kindName(_ k: Int32) -> String {
    switch k {
    case PYLON_FN_QUERY: "query"
    case PYLON_FN_MUTATION: "mutation"
    case PYLON_FN_WORKFLOW: "workflow"
    default: "action"
    }
}

/// The kind a worker's `fn_type` names (an unknown one is an action, as before workflows).
func kindCode(_ name: String?) -> Int32 {
    switch name {
    case "query": PYLON_FN_QUERY
    case "mutation": PYLON_FN_MUTATION
    case "workflow": PYLON_FN_WORKFLOW
    default: PYLON_FN_ACTION
    }
}
