import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON

/// The manifest's cron tasks and those functions registered (`ctx.cron.register`, kept in
/// `_pylon_cron_tasks` and read from the store at every tick, so every host sees them), run
/// as durable jobs. A registered task named like a manifest task is ignored (registration
/// refuses such names; a manifest changed later wins). Each host ticks; a due occurrence is
/// claimed by moving the task's `last_fired` in `_pylon_cron` from the value the host read
/// to the occurrence (compare-and-set), in the same write transaction that enqueues the
/// job (whose idempotency key names the occurrence besides), so each occurrence enqueues
/// one job across hosts and restarts. Occurrences missed while no host ran fire once, at
/// start-up (the newest of them), unless `PYLON_CRON_CATCH_UP=0` (then they are skipped).
package final class CronService: @unchecked Sendable {
    struct Scheduled: Sendable {
        let spec: CronTask
        let expr: CronExpression
        let zone: TimeZone
        /// "manifest" or "function" (`GET /api/scheduler`'s `origin`).
        var origin = "manifest"
    }

    /// The manifest's tasks.
    let tasks: [Scheduled]
    /// Registered tasks parsed at an earlier tick, by name, with the definition they came
    /// from (nil: it did not parse, and was logged once).
    private var parsed: [String: (def: RegisteredCronTask, task: Scheduled?)] = [:]
    private let lock = NSLock()
    let jobs: JobService
    let logger: Logger
    let catchUp: Bool
    static let table = SystemTables.cron.name

    /// `manifest`'s tasks, already validated (`ManifestValidator.checkCron`); one that
    /// still fails to parse is skipped with an error in the log.
    package init(tasks specs: [CronTask], jobs: JobService, catchUp: Bool, logger: Logger) {
        var tasks: [Scheduled] = []
        for spec in specs {
            guard let expr = try? CronExpression(spec.schedule), let zone = TimeZone(identifier: spec.timezone) else {
                logger.error("cron: task \(spec.name) has an invalid schedule or time zone; skipped")
                continue
            }
            tasks.append(Scheduled(spec: spec, expr: expr, zone: zone))
        }
        // Checked here, at start-up, while the plugin surely runs (not from the ticker, which
        // may still be starting when a failed start stops the plugins).
        for t in tasks where (try? jobs.functions.describe(t.spec.function)) == nil {
            logger.warning("cron: task \(t.spec.name) runs function \(t.spec.function), which the functions plugin does not serve; its jobs will fail")
        }
        self.tasks = tasks
        self.jobs = jobs
        self.catchUp = catchUp
        self.logger = logger
    }

    var store: StoreThreads { jobs.store }
    func sql(_ s: String) -> String { jobs.jobs.sql(s) }
    func task(_ name: String) async throws -> Scheduled {
        let all = try await store.read { [self] conn in try self.all(conn) }
        guard let t = all.first(where: { $0.spec.name == name }) else {
            throw HostError.notFound("no cron task named \"\(name)\"; GET /api/scheduler lists them")
        }
        return t
    }

    /// The manifest's tasks, then the registered ones (in name order) whose names the
    /// manifest does not use. A registered task that no longer parses (a zone database
    /// changed under it) is left out, with an error in the log.
    func all(_ conn: StoreConnection) throws -> [Scheduled] {
        let registered = try CronTaskStore(dialect: store.dialect).all(conn)
        let manifestNames = Set(tasks.map(\.spec.name))
        let known = lock.withLock { parsed }
        var out = tasks, fresh: [String: (def: RegisteredCronTask, task: Scheduled?)] = [:]
        for r in registered where !manifestNames.contains(r.name) {
            if let k = known[r.name], k.def == r {
                fresh[r.name] = k
            } else if let expr = try? CronExpression(r.schedule), let zone = TimeZone(identifier: r.timezone) {
                fresh[r.name] = (r, Scheduled(spec: r.cronTask, expr: expr, zone: zone, origin: "function"))
            } else {
                logger.error("cron: registered task \(r.name) has an invalid schedule or time zone; skipped")
                fresh[r.name] = (r, nil)
            }
            if let t = fresh[r.name]?.task { out.append(t) }
        }
        lock.withLock { parsed = fresh }
        return out
    }

    /// A task's stored state.
    struct State: Sendable {
        var lastFired: Int64?
        var since: Int64
        var enabled: Bool
        /// The newest moment no occurrence at or before which may fire.
        var floor: Int64 { max(lastFired ?? since, since) }
    }

    func states(_ conn: StoreConnection) throws -> [String: State] {
        var out: [String: State] = [:]
        for row in try conn.execute("SELECT name, last_fired, since, enabled FROM \(Self.table)").rows {
            guard case let .text(name) = row[0], case let .int(since) = row[2], case let .int(enabled) = row[3] else { continue }
            var last: Int64?
            if case let .int(l) = row[1] { last = l }
            out[name] = State(lastFired: last, since: since, enabled: enabled != 0)
        }
        return out
    }

    /// Rows for tasks seen for the first time (tracking starts now), and, without catch-up,
    /// every task's missed occurrences passed over.
    func prepare() async throws {
        let tasks = tasks, catchUp = catchUp
        let insert = sql("INSERT INTO \(Self.table) (name, last_fired, since, enabled) VALUES (?, NULL, ?, ?) ON CONFLICT (name) DO NOTHING")
        let skip = sql("UPDATE \(Self.table) SET since = ? WHERE name = ? AND since < ?")
        try await store.write { tx in
            let now = JobStore.nowMillis()
            for t in tasks {
                try tx.connection.execute(insert, [.text(t.spec.name), .int(now), .int(t.spec.enabled ? 1 : 0)], wantRows: false)
                if !catchUp { try tx.connection.execute(skip, [.int(now), .text(t.spec.name), .int(now)], wantRows: false) }
            }
        }
    }

    /// The newest occurrence in (`after`, `now`], if any: windows of growing size are tried
    /// so a long outage of a frequent task costs few steps.
    static func newestOccurrence(_ t: Scheduled, after: Int64, now: Int64) -> Int64? {
        let nowDate = Date(timeIntervalSince1970: TimeInterval(now) / 1000)
        guard let first = t.expr.next(after: Date(timeIntervalSince1970: TimeInterval(after) / 1000), in: t.zone), first <= nowDate else { return nil }
        for window in [3_600_000, 86_400_000, 32 * 86_400_000, 400 * 86_400_000] as [Int64] {
            var cursor = Date(timeIntervalSince1970: TimeInterval(max(after, now - window)) / 1000)
            var newest: Date?
            var steps = 0
            while let n = t.expr.next(after: cursor, in: t.zone), n <= nowDate, steps < 10_000 {
                newest = n
                cursor = n
                steps += 1
            }
            if let newest { return Int64((newest.timeIntervalSince1970 * 1000).rounded()) }
        }
        return Int64((first.timeIntervalSince1970 * 1000).rounded())
    }

    /// The job an occurrence (or a manual trigger) enqueues.
    func request(_ t: Scheduled, at: Int64, manual: Bool) -> JobRequest {
        var payload = t.spec.args ?? .object([("scheduled", true), ("timestamp", .string(ISOTime.string(millis: at)))])
        if manual, t.spec.args == nil { payload = payload.setting("manual_trigger", true) }
        return JobRequest(name: t.spec.function, payload: payload, priority: t.spec.priority.flatMap { p in JobPriority.allCases.first { $0.name == p } } ?? .normal,
                          queue: t.spec.queue ?? "default", maxRetries: Int64(t.spec.maxRetries ?? 3),
                          idempotencyKey: manual ? nil : "cron:\(t.spec.name):\(at)", origin: "cron:\(t.spec.name)")
    }

    /// Fires due occurrences until cancelled.
    package func run() async {
        do {
            try await prepare()
        } catch {
            logger.error("cron: cannot prepare the task table (\(error)); no task fires")
            return
        }
        while !Task.isCancelled {
            do { try await tick() } catch {
                if Task.isCancelled { return }
                logger.warning("cron: \(error)")
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    func tick() async throws {
        let (tasks, states) = try await store.read { [self] conn in (try self.all(conn), try self.states(conn)) }
        let now = JobStore.nowMillis()
        for t in tasks {
            guard let s = states[t.spec.name], s.enabled, let occurrence = Self.newestOccurrence(t, after: s.floor, now: now) else { continue }
            let claim = sql("UPDATE \(Self.table) SET last_fired = ? WHERE name = ? AND enabled = 1 AND since = ? AND " + (s.lastFired == nil ? "last_fired IS NULL" : "last_fired = ?"))
            let params: [SQLValue] = [.int(occurrence), .text(t.spec.name), .int(s.since)] + (s.lastFired.map { [.int($0)] } ?? [])
            let job = request(t, at: occurrence, manual: false)
            let jobStore = jobs.jobs
            let fired = try await store.write { tx -> Bool in
                guard try tx.connection.execute(claim, params, wantRows: false).rowsAffected == 1 else { return false }
                _ = try jobStore.enqueue(tx, job)
                return true
            }
            if fired {
                logger.info("cron: \(t.spec.name) fired for \(ISOTime.string(millis: occurrence))")
                jobs.wake()
            }
        }
    }

    // MARK: admin

    /// `GET /api/scheduler`: `[{name, expr, enabled, last_run, next_run, timezone, function, origin}]`.
    package func list() async throws -> JSONValue {
        let (tasks, states) = try await store.read { [self] conn in (try self.all(conn), try self.states(conn)) }
        let now = Date()
        return .array(tasks.map { t in
            let s = states[t.spec.name]
            let enabled = s?.enabled ?? t.spec.enabled
            var next: JSONValue = .null
            if enabled, let s {
                let floor = Date(timeIntervalSince1970: TimeInterval(s.floor) / 1000)
                if let n = t.expr.next(after: max(floor, now.addingTimeInterval(-1)), in: t.zone) {
                    next = .string(ISOTime.string(n))
                }
            }
            return .object([
                ("name", .string(t.spec.name)), ("expr", .string(t.expr.text)), ("enabled", .bool(enabled)),
                ("last_run", s?.lastFired.map { .string(ISOTime.string(millis: $0)) } ?? .null), ("next_run", next),
                ("timezone", .string(t.spec.timezone)), ("function", .string(t.spec.function)), ("origin", .string(t.origin)),
            ])
        })
    }

    /// `POST /api/scheduler/trigger/:name`: a job now, besides the schedule.
    package func trigger(_ name: String) async throws -> String {
        let t = try await task(name)
        return try await jobs.enqueue(request(t, at: JobStore.nowMillis(), manual: true)).id
    }

    /// Enables or disables a task for every host; enabling starts from now (occurrences
    /// while it was off do not fire).
    package func setEnabled(_ name: String, _ on: Bool) async throws {
        _ = try await task(name)
        let q = sql(on ? "UPDATE \(Self.table) SET enabled = 1, since = ? WHERE name = ? AND enabled = 0"
                       : "UPDATE \(Self.table) SET enabled = 0 WHERE name = ?")
        let params: [SQLValue] = on ? [.int(JobStore.nowMillis()), .text(name)] : [.text(name)]
        _ = try await store.write { tx in try tx.connection.execute(q, params, wantRows: false) }
    }
}
