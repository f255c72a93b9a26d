import PylonCore
import PylonJSON

/// A cron task a function registered (`ctx.cron.register`), as `_pylon_cron_tasks` holds it.
package struct RegisteredCronTask: Sendable, Equatable {
    package var name: String
    package var schedule: String
    package var function: String
    package var timezone: String
    /// The job payload's JSON text; nil: Pylon's `{"scheduled": true, "timestamp"}`.
    package var payload: String?

    package init(name: String, schedule: String, function: String, timezone: String, payload: String?) {
        self.name = name
        self.schedule = schedule
        self.function = function
        self.timezone = timezone
        self.payload = payload
    }

    /// As the manifest's tasks are described (`CronService` runs both alike).
    package var cronTask: CronTask {
        CronTask(name: name, schedule: schedule, function: function, args: payload.flatMap { try? JSONParser.parse($0) }, timezone: timezone)
    }
}

/// The statements on `_pylon_cron_tasks` (`SystemTables.cronTasks`), run in the caller's
/// write transaction, so a mutation's registration commits or rolls back with its writes.
/// A task's state (`last_fired`, `since`, `enabled`) lives in `_pylon_cron`, as a manifest
/// task's does, so `CronService`'s claim rules apply to both.
package struct CronTaskStore: Sendable {
    let jobs: JobStore
    package static let table = SystemTables.cronTasks.name
    static let stateTable = SystemTables.cron.name
    /// The most tasks functions may register, across every host on the database: exact,
    /// because `register` counts inside a write transaction and write transactions never
    /// overlap (see `register`).
    package static let limit = 100

    package init(dialect: SQLDialect) { jobs = JobStore(dialect: dialect) }

    func sql(_ s: String) -> String { jobs.sql(s) }

    /// Every registered task, by name.
    package func all(_ conn: StoreConnection) throws -> [RegisteredCronTask] {
        try conn.execute("SELECT name, schedule, function, timezone, payload FROM \(Self.table) ORDER BY name").rows.compactMap { row in
            guard case let .text(name) = row[0], case let .text(schedule) = row[1], case let .text(function) = row[2],
                  case let .text(zone) = row[3] else { return nil }
            var payload: String?
            if case let .text(p) = row[4] { payload = p }
            return RegisteredCronTask(name: name, schedule: schedule, function: function, timezone: zone, payload: payload)
        }
    }

    /// Registers `task` in `tx`, or replaces the one of that name. A new or changed task is
    /// tracked from now (no earlier occurrence fires); registering the same definition again
    /// changes nothing (an operator's disable stays). Whether the definition is new or changed.
    /// `taken`: the manifest's task names (CRON_NAME_TAKEN).
    @discardableResult
    package func register(_ tx: WriteTransaction, _ task: RegisteredCronTask, taken: Set<String>,
                          now: Int64 = JobStore.nowMillis()) throws -> Bool {
        guard !taken.contains(task.name) else { throw Self.nameTaken(task.name) }
        let conn = tx.connection
        let existing = try all(conn).first { $0.name == task.name }
        if existing == task { return false }
        if existing == nil {
            // The count is exact across hosts. SQLite has one writer at a time. On PostgreSQL
            // every write transaction takes the shared advisory lock (`PostgresDialect.
            // writeLockSQL`) right after BEGIN, so two hosts' registrations run one after the
            // other, and this READ COMMITTED count sees every task committed before it; no
            // lock of its own is needed (CronFunctionTests' two-host test checks it).
            let count = try conn.execute("SELECT COUNT(*) FROM \(Self.table)").rows.first?.first
            if case let .int(n)? = count, n >= Self.limit {
                throw HostError(status: 409, code: "CRON_LIMIT",
                                message: "functions have registered \(n) cron tasks, the most allowed (\(Self.limit)); unregister one first (ctx.cron.unregister)")
            }
        }
        let values: [SQLValue] = [.text(task.name), .text(task.schedule), .text(task.function), .text(task.timezone),
                                  task.payload.map(SQLValue.text) ?? .null, .int(now)]
        try conn.execute(sql("""
            INSERT INTO \(Self.table) (name, schedule, function, timezone, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, function = excluded.function,
            timezone = excluded.timezone, payload = excluded.payload
            """), values, wantRows: false)
        // A new task starts enabled (a stale state row of a task since removed is reset); a
        // changed one keeps the operator's switch. Either is tracked from now.
        let enabled = existing == nil ? ", enabled = 1" : ""
        try conn.execute(sql("""
            INSERT INTO \(Self.stateTable) (name, last_fired, since, enabled) VALUES (?, NULL, ?, 1)
            ON CONFLICT (name) DO UPDATE SET last_fired = NULL, since = excluded.since\(enabled)
            """), [.text(task.name), .int(now)], wantRows: false)
        return true
    }

    /// Removes task `name` and its state in `tx`; whether there was one.
    package func unregister(_ tx: WriteTransaction, name: String, taken: Set<String>) throws -> Bool {
        guard !taken.contains(name) else { throw Self.nameTaken(name) }
        // Read first: a deferred-write store (D1) reports no row counts until commit.
        guard try !tx.connection.execute(sql("SELECT name FROM \(Self.table) WHERE name = ?"), [.text(name)]).rows.isEmpty else { return false }
        try tx.connection.execute(sql("DELETE FROM \(Self.table) WHERE name = ?"), [.text(name)], wantRows: false)
        try tx.connection.execute(sql("DELETE FROM \(Self.stateTable) WHERE name = ?"), [.text(name)], wantRows: false)
        return true
    }

    static func nameTaken(_ name: String) -> HostError {
        HostError(status: 409, code: "CRON_NAME_TAKEN",
                  message: "the manifest declares a cron task named \"\(name)\"; functions cannot register, replace or remove it — choose another name")
    }
}
