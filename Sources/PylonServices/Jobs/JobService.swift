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
    /// Running jobs whose function is done and whose outcome is queued for the writer:
    /// their slots are as good as free (under `lock`).
    private var finishing = 0
    /// Running jobs whose outcome the writer's current transaction has already written:
    /// their slots count as free for a claim later in the same transaction (the store's
    /// count of each queue's running jobs sees the outcome too). Emptied as each outcome's
    /// commit is answered.
    private var recorded: Set<String> = []
    /// A claim transaction is queued or running (at most one at a time).
    private var claimQueued = false
    /// Jobs whose function succeeded, waiting for the writer: one write records all of
    /// them (`flushCompletions`), queued when the first arrives.
    private var succeeded: [JobStore.Claimed] = []
    private var completionsQueued = false
    /// Where each priority's next claim may start reading (`JobStore.claim`); forgotten at
    /// every poll, so a job due before a floor waits at most one poll interval.
    private var floors: [JobPriority: JobStore.Floor] = [:]
    /// Counts the polls' forgetting, so floors a claim read before one are not kept after it.
    private var floorsEpoch = 0
    private let wakeup = Wakeup()
    /// The host's own job handlers by job name (e.g. the workflow engine's advance), run
    /// instead of a function; registered at start-up, before `run`.
    private var builtins: [String: @Sendable (JSONValue) async throws -> Void] = [:]
    /// The host's own trims of finished work, run with the jobs' trim (at start-up, then
    /// every minute) with its time (ms), e.g. the workflows' retention; registered at
    /// start-up, before `run`. Each logs its own failures.
    private var trims: [@Sendable (_ now: Int64) async -> Void] = []

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

    /// Runs `trim` with every trim of old jobs (see `trims`).
    package func register(trim: @escaping @Sendable (_ now: Int64) async -> Void) {
        lock.withLock { trims.append(trim) }
    }

    /// The most jobs of `queue` running at once, across hosts.
    package func limit(_ queue: String) -> Int { config.jobsQueues[queue] ?? config.jobsWorkers }

    /// Enqueues from the admin API: the handler must be a function the plugin serves.
    package func enqueue(_ request: JobRequest) async throws -> (id: String, status: String, created: Bool) {
        try functions.requireJobHandler(request.name)
        let jobs = jobs
        // Replayable: it only writes in the transaction, so concurrent enqueues commit together.
        let r = try await store.write(replayable: true) { tx in try jobs.enqueue(tx, request) }
        // A delayed job is found by the poll that comes after it is due.
        if r.created, request.delayMs == 0 { wake() }
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

    /// The poll loop, until cancelled: claims when jobs may be due (at each poll and each
    /// `wake`); every third of a lease renews this host's leases and takes back lapsed
    /// ones; every minute trims old completed and cancelled jobs (and runs the `trims`
    /// registered) and recounts each queue's running jobs
    /// (at once on start-up). While jobs keep finishing, claims are asked for by their
    /// completions instead (`requestClaim`).
    package func run() async {
        let poll = Duration.milliseconds(config.jobsPollMs)
        let leaseMs = Int64(config.jobsLeaseMs)
        var lastRenew: Int64 = 0, lastTrim: Int64 = 0
        while !Task.isCancelled {
            do {
                let jobs = jobs
                let now = JobStore.nowMillis()
                if now - lastTrim >= 60_000 {
                    lastTrim = now
                    try await store.write(replayable: true) { tx in try jobs.recount(tx) }
                    if config.jobsRetentionHours > 0 {
                        let before = now - Int64(config.jobsRetentionHours) * 3_600_000
                        let n = try await store.write(replayable: true) { tx in try jobs.trim(tx, before: before) }
                        if n > 0 { logger.info("jobs: deleted \(n) completed or cancelled jobs older than \(config.jobsRetentionHours) h") }
                    }
                    for trim in lock.withLock({ trims }) { await trim(now) }
                }
                if now - lastRenew >= leaseMs / 3 {
                    lastRenew = now
                    let held = lock.withLock { running.map { (id: $0.key, claim: $0.value) } }
                    let backoff = backoff
                    let lapsed = try await store.write(replayable: true) { tx in
                        try jobs.renew(tx, held, leaseMs: leaseMs)
                        return try jobs.reclaimLapsed(tx, backoff: backoff)
                    }
                    if lapsed > 0 { logger.warning("jobs: \(lapsed) jobs whose lease lapsed will run again") }
                }
                lock.withLock {
                    floors = [:]
                    floorsEpoch += 1
                }
                let idle = lock.withLock { !claimQueued && hasFreeSlot }
                if idle, try await store.read({ conn in try jobs.hasWork(conn) }) {
                    requestClaim()
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

    /// Whether a job could start now (under `lock`).
    private var hasFreeSlot: Bool { running.count - finishing < config.jobsWorkers }

    /// Queues one claim transaction unless one is queued already. The claim takes as many
    /// jobs as there are free slots when the writer runs it, so completions that commit
    /// while it waits are counted: under load one claim serves a whole batch of
    /// completions, and no job waits for the poll.
    private func requestClaim() {
        let go: Bool = lock.withLock {
            guard !claimQueued, !stopping, hasFreeSlot else { return false }
            claimQueued = true
            return true
        }
        guard go else { return }
        let jobs = jobs, leaseMs = Int64(config.jobsLeaseMs)
        let limits = config.jobsQueues, workers = config.jobsWorkers
        // Replayable: the body reads `running` and `recorded` but changes nothing outside
        // the transaction.
        store.write(replayable: true, { [self] tx -> (Int, [JobStore.Claimed], [JobPriority: JobStore.Floor], Int) in
            let (free, given, epoch) = lock.withLock { (workers - (running.count - recorded.count), self.floors, floorsEpoch) }
            var next = given
            let claimed = try jobs.claim(tx, slots: free, leaseMs: leaseMs, limit: { limits[$0] ?? workers }, floors: &next)
            return (free, claimed, next, epoch)
        }) { [self] result in
            switch result {
            case let .success((free, claimed, floors, epoch)):
                lock.withLock {
                    claimQueued = false
                    if epoch == floorsEpoch { self.floors = floors }
                    for c in claimed { running[c.id] = c.claim }
                }
                for c in claimed { start(c) }
                // Every slot it had was filled: more may be due for the slots freed since.
                if !claimed.isEmpty, claimed.count == free { requestClaim() }
            case let .failure(error):
                lock.withLock { claimQueued = false }
                logger.warning("jobs: cannot claim (\(error)); trying again at the next poll")
            }
        }
    }

    /// Runs a claimed job (already in `running`) by callbacks, with no Task of its own
    /// unless it is a built-in: the function's outcome is recorded by a write whose
    /// commit frees the slot and asks for the next claim.
    private func start(_ c: JobStore.Claimed) {
        if lock.withLock({ stopping }) { return }
        if let builtin = lock.withLock({ builtins[c.name] }) {
            Task { [self] in
                do {
                    try await builtin(try JSONParser.parse(c.payload))
                    record(c, failure: nil)
                } catch {
                    record(c, failure: error)
                }
            }
            return
        }
        functions.start(c.name, argsJSON: Array(c.payload.utf8), auth: .anonymous) { [self] result in
            switch result {
            case .success: record(c, failure: nil)
            case let .failure(error): record(c, failure: error)
            }
        }
    }

    /// Records a job's outcome; a failure to record leaves the job to its lease (it runs
    /// again: at least once). A claim is asked for at once, so it is usually queued right
    /// behind the outcome and fills the slot in the same transaction (one commit per job
    /// cycle, which is what a store that syncs each commit pays for); slots that claim did
    /// not see are claimed once the outcome committed.
    private func record(_ c: JobStore.Claimed, failure error: Error?) {
        guard let error else {
            let first: Bool = lock.withLock {
                finishing += 1
                succeeded.append(c)
                defer { completionsQueued = true }
                return !completionsQueued
            }
            if first { flushCompletions() }
            requestClaim()
            return
        }
        let e = DataService.hostError(error)
        let failure = "\(e.code): \(e.message)"
        let jobs = jobs, backoff = backoff
        lock.withLock { finishing += 1 }
        store.write(replayable: true, { [self] tx -> String? in
            let outcome = try jobs.fail(tx, id: c.id, claim: c.claim, error: failure, backoff: backoff)
            lock.withLock { _ = recorded.insert(c.id) }
            return outcome
        }) { [self] result in
            switch result {
            case let .success(now):
                logger.warning("job \(c.id) (\(c.name)) failed: \(failure); \(now == "dead" ? "dead" : now == nil ? "it was no longer this host's" : "will retry")")
            case let .failure(e):
                logger.warning("job \(c.id): cannot record its outcome (\(e)); it runs again when its lease lapses")
            }
            released([c])
        }
        requestClaim()
    }

    /// Writes every completion waiting in `succeeded`, taken when the writer runs the body
    /// (so those that arrive meanwhile ride along) and kept for a replay of the body.
    private func flushCompletions() {
        let jobs = jobs
        let taken = TakenBatch()
        let take: @Sendable () -> [JobStore.Claimed] = { [self] in
            if let batch = taken.batch { return batch }
            let batch = lock.withLock {
                defer { succeeded = []; completionsQueued = false }
                return succeeded
            }
            taken.batch = batch
            return batch
        }
        store.write(replayable: true, { [self] tx in
            let batch = take()
            try jobs.complete(tx, batch)
            lock.withLock { for c in batch { recorded.insert(c.id) } }
        }) { [self] result in
            let batch = take()
            if case let .failure(e) = result {
                logger.warning("jobs: cannot record \(batch.count) completions (\(e)); they run again when their leases lapse")
            }
            released(batch)
        }
    }

    /// The outcomes of `batch` are written (or could not be): their slots are free.
    private func released(_ batch: [JobStore.Claimed]) {
        lock.withLock {
            for c in batch {
                running.removeValue(forKey: c.id)
                recorded.remove(c.id)
            }
            finishing -= batch.count
        }
        requestClaim()
    }
}

/// The completions one write took (`JobService.flushCompletions`): set by its first run on
/// the writer's thread, read by a replay and by the answer, which come after it.
private final class TakenBatch: @unchecked Sendable {
    var batch: [JobStore.Claimed]?
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
