import Foundation
import Logging
import PylonCore
import PylonData
import PylonPluginABI
import PylonJSON

/// Durable jobs: enqueued into `_pylon_jobs` (`JobStore`) and run by every host's runner
/// (`run`) as the app's server functions, at least once. A host claims due jobs in a write
/// transaction with a lease it renews while the function runs (a heartbeat every third of
/// the lease); a job whose host died runs again once its lease lapses, counted as a failed
/// attempt. A failed attempt is retried after an exponential back-off with jitter
/// (`JobBackoff`) while `max_retries` allows, then the job is dead until an admin retries
/// it. Jobs run as nobody (`user_id` null, not admin), as `ctx.scheduler`'s calls do.
///
/// `ctx.scheduler` stays beside this queue, unchanged: its calls are at most once and have
/// no retries to speak of, which is what Pylon's API promises; `ctx.jobs` is the queue.
package final class JobService: @unchecked Sendable {
    package let store: StoreThreads
    package let jobs: JobStore
    let functions: FunctionService
    let config: HostConfig
    let logger: Logger
    let backoff: JobBackoff
    private let lock = NSLock()
    /// Jobs this host is running: id → claim.
    private var running: [String: Int64] = [:]
    /// Set by `stop`: no job starts a call any more (the plugins are about to stop).
    private var stopping = false
    private let wakeup = Wakeup()
    /// The host's own job handlers by job name (e.g. the workflow engine's advance), run
    /// instead of a function; registered at start-up, before `run`.
    private var builtins: [String: @Sendable (JSONValue) async throws -> Void] = [:]

    package init(store: StoreThreads, functions: FunctionService, config: HostConfig, logger: Logger) {
        self.store = store
        jobs = JobStore(dialect: store.dialect)
        self.functions = functions
        self.config = config
        self.logger = logger
        backoff = JobBackoff(baseMs: Int64(config.jobsBackoffMs), maxMs: Int64(config.jobsBackoffMaxMs))
    }

    /// Makes jobs named `name` run `handler` with their payload. Names of the host's own
    /// start with "pylon."; no function answers to them.
    package func register(builtin name: String, _ handler: @escaping @Sendable (JSONValue) async throws -> Void) {
        lock.withLock { builtins[name] = handler }
    }

    /// The most jobs of `queue` running at once, across hosts.
    package func limit(_ queue: String) -> Int { config.jobsQueues[queue] ?? config.jobsWorkers }

    /// Enqueues from the admin API: the handler must be a function the plugin serves.
    package func enqueue(_ request: JobRequest) async throws -> (id: String, status: String, created: Bool) {
        let info: pylon_fn_info
        do {
            info = try functions.describe(request.name)
        } catch let e as HostError where e.code == "FN_NOT_FOUND" {
            throw HostError.badRequest("UNKNOWN_JOB_HANDLER", "no function named \"\(request.name)\" runs jobs; name a mutation or action in the functions folder")
        }
        guard info.kind != PYLON_FN_WORKFLOW else {
            throw HostError.badRequest("FN_IS_WORKFLOW", "\"\(request.name)\" is a workflow, which a job cannot run; start it with POST /api/workflows/start")
        }
        let jobs = jobs
        let r = try await store.write { tx in try jobs.enqueue(tx, request) }
        if r.created { wake() }
        return r
    }

    /// The runner looks for work now instead of at its next poll.
    package func wake() { wakeup.signal() }

    package func cancel(_ id: String) async throws {
        let jobs = jobs
        try await store.write { tx in try jobs.cancel(tx, id: id) }
    }

    package func retryDead(_ id: String) async throws {
        let jobs = jobs
        try await store.write { tx in try jobs.retryDead(tx, id: id) }
        wake()
    }

    /// Claims and runs due jobs until cancelled; renews this host's leases and trims old
    /// finished jobs on the way.
    package func run() async {
        let poll = Duration.milliseconds(config.jobsPollMs)
        let leaseMs = Int64(config.jobsLeaseMs)
        var lastRenew = JobStore.nowMillis(), lastTrim: Int64 = 0
        while !Task.isCancelled {
            do {
                let free = config.jobsWorkers - lock.withLock { running.count }
                let jobs = jobs
                if free > 0, try await store.read({ conn in try jobs.hasWork(conn) }) {
                    let backoff = backoff
                    let limits = config.jobsQueues, fallback = config.jobsWorkers
                    let claimed = try await store.write { tx in
                        try jobs.claim(tx, slots: free, leaseMs: leaseMs, backoff: backoff, limit: { limits[$0] ?? fallback })
                    }
                    for c in claimed { start(c) }
                }
                let now = JobStore.nowMillis()
                if now - lastRenew >= leaseMs / 3 {
                    lastRenew = now
                    let held = lock.withLock { running.map { (id: $0.key, claim: $0.value) } }
                    if !held.isEmpty { try await store.write { tx in try jobs.renew(tx, held, leaseMs: leaseMs) } }
                }
                if config.jobsRetentionHours > 0, now - lastTrim >= 60_000 {
                    lastTrim = now
                    let before = now - Int64(config.jobsRetentionHours) * 3_600_000
                    let n = try await store.write { tx in try jobs.trim(tx, before: before) }
                    if n > 0 { logger.info("jobs: deleted \(n) finished jobs older than \(config.jobsRetentionHours) h") }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("jobs: \(error)")
            }
            await wakeup.wait(poll)
        }
    }

    /// Called as the host stops, before the plugins do: claimed jobs that have not started
    /// their call yet do not start it (their leases lapse and they run again after a restart).
    package func stop() {
        lock.withLock { stopping = true }
        wake()
    }

    /// Runs a claimed job and records its outcome; a failure to record leaves the job to
    /// its lease (it runs again: at least once).
    private func start(_ c: JobStore.Claimed) {
        lock.withLock { running[c.id] = c.claim }
        Task { [self] in
            if lock.withLock({ stopping }) { return }
            let failure: String?
            do {
                if let builtin = lock.withLock({ builtins[c.name] }) {
                    try await builtin(try JSONParser.parse(c.payload))
                } else {
                    _ = try await functions.call(c.name, argsJSON: Array(c.payload.utf8), auth: .anonymous)
                }
                failure = nil
            } catch {
                let e = DataService.hostError(error)
                failure = "\(e.code): \(e.message)"
            }
            let jobs = jobs, backoff = backoff
            do {
                if let failure {
                    let now = try await store.write { tx in try jobs.fail(tx, id: c.id, claim: c.claim, error: failure, backoff: backoff) }
                    if let now { logger.warning("job \(c.id) (\(c.name)) failed: \(failure); \(now == "dead" ? "dead" : "will retry")") }
                } else {
                    _ = try await store.write { tx in try jobs.complete(tx, id: c.id, claim: c.claim) }
                }
            } catch {
                logger.warning("job \(c.id): cannot record its outcome (\(error)); it runs again when its lease lapses")
            }
            lock.withLock { _ = running.removeValue(forKey: c.id) }
            wake()
        }
    }
}

/// Wakes a sleeping loop early: `wait` returns after its timeout or at the first
/// `signal` (one given while nobody waits is kept for the next `wait`).
final class Wakeup: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var generation = 0

    func signal() {
        lock.lock()
        if let w = waiter {
            waiter = nil
            lock.unlock()
            w.resume()
        } else {
            pending = true
            lock.unlock()
        }
    }

    /// The timer of wait number `mine` ran out: wake it, unless it was woken already.
    private func expire(_ mine: Int) {
        lock.lock()
        guard generation == mine, let w = waiter else {
            lock.unlock()
            return
        }
        waiter = nil
        lock.unlock()
        w.resume()
    }

    func wait(_ timeout: Duration) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if pending {
                pending = false
                lock.unlock()
                c.resume()
                return
            }
            generation += 1
            let mine = generation
            waiter = c
            lock.unlock()
            Task { [self] in
                try? await Task.sleep(for: timeout)
                expire(mine)
            }
        }
    }
}
