import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON

/// `ctx.scheduler`: durable scheduled function calls. A schedule is a row of
/// `_pylon_schedules`, written by the scheduling function's own transaction (so a
/// mutation that rolls back schedules nothing) and deleted by `cancel`. Every host polls
/// for due rows and claims each by deleting it before running it (`Runner`), so a call runs
/// once, even with several hosts on one Postgres database, and survives restarts; a host
/// that dies while running one loses that run (at most once). A failed run is retried twice
/// (1 s, then 2 s later). Scheduled calls run as nobody (`user_id` null, not admin),
/// as in Pylon.
package enum FunctionScheduler {
    package static let table = SystemTables.schedules.name
    static let maxAttempts: Int64 = 3

    /// DDL for the schedules table, run at startup when functions are served.
    package static func createSQL(_ d: SQLDialect) -> [String] { d.createSystemTable(SystemTables.schedules) }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Inserts a schedule inside `tx`; returns its id.
    static func insert(_ tx: WriteTransaction, name: String, args: JSONValue, runAt: Int64, attempts: Int64 = 0) throws -> String {
        let d = tx.dialect
        let id = RowID.generate()
        let cols = ["id", "fn_name", "args", "run_at", "attempts"].map(d.quote).joined(separator: ", ")
        let phs = (1...5).map { d.placeholder($0) }.joined(separator: ", ")
        try tx.connection.execute("INSERT INTO \(d.quote(table)) (\(cols)) VALUES (\(phs))",
                                  [.text(id), .text(name), .text(JSONWriter.string(args)), .int(runAt), .int(attempts)], wantRows: false)
        return id
    }

    /// Deletes a schedule inside `tx`; whether it existed (had not run yet).
    static func delete(_ tx: WriteTransaction, id: String) throws -> Bool {
        let d = tx.dialect
        return try tx.connection.execute("DELETE FROM \(d.quote(table)) WHERE \(d.quote("id")) = \(d.placeholder(1))",
                                         [.text(id)], wantRows: false).rowsAffected > 0
    }

    /// When a `schedule` op asks to run: `run_at` (Unix ms) or now + `delay_ms`, at most
    /// 366 days ahead (as a job's delay). The numbers come from function code, often from a
    /// caller's input: one that is not a number in range is 400 INVALID_OP, never a trap.
    static func runAt(_ op: FnOp) throws -> Int64 {
        let now = nowMillis(), latest = Double(now) + Double(JobRequest.maxDelayMs)
        if let given = op.raw["run_at"], !given.isNull {
            guard let at = given.doubleValue, at.isFinite, at >= 0, at <= latest else {
                throw HostError.badRequest("INVALID_OP", "runAt takes a time in Unix milliseconds, from 0 up to 366 days from now")
            }
            return Int64(at)
        }
        guard let delay = (op.raw["delay_ms"] ?? .int(0)).doubleValue, delay.isFinite, delay >= 0,
              delay <= Double(JobRequest.maxDelayMs) else {
            throw HostError.badRequest("INVALID_OP", "runAfter takes a delay in milliseconds, from 0 up to 366 days")
        }
        return now + Int64(delay)
    }

}

extension FunctionScheduler {
    /// The host's poll loop for due schedules. A row is claimed by deleting it and its call
    /// starts at once, so a claimed schedule is a running one: at most `capacity` run at
    /// once on a host, and a poll claims only the free slots. (Claiming 32 per poll
    /// whatever was running turned a backlog into thousands of in-memory calls within
    /// seconds, all lost at the next restart: an outside probe lost 800 of 1,000.) A
    /// graceful stop (`drain`) claims nothing more and lets the running calls finish while
    /// the functions and the store are still up; what a host that dies was running is
    /// lost (at most once).
    package final class Runner: @unchecked Sendable {
        /// Scheduled calls running at once on one host.
        package static let capacity = 32
        let functions: FunctionService
        let logger: Logger
        private let lock = NSLock()
        private var running = 0
        private var stopping = false

        package init(_ functions: FunctionService, logger: Logger) {
            self.functions = functions
            self.logger = logger
        }

        /// Polls every 200 ms until cancelled or stopping.
        package func run() async {
            let store = functions.store
            let d = store.dialect
            let due = "SELECT \(d.quote("id")), \(d.quote("fn_name")), \(d.quote("args")), \(d.quote("attempts")) FROM \(d.quote(table)) WHERE \(d.quote("run_at")) <= \(d.placeholder(1)) ORDER BY \(d.quote("run_at")) LIMIT \(d.placeholder(2))"
            let none = Array("[]".utf8)
            while !Task.isCancelled, !isStopping {
                // An app without functions has nothing to run: no store query every tick.
                if functions.list() == none {
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
                do {
                    let free = lock.withLock { Self.capacity - running }
                    if free > 0 {
                        let rows = try await store.read { conn in try conn.execute(due, [.int(nowMillis()), .int(Int64(free))]).rows }
                        for row in rows {
                            guard row.count == 4, case let .text(id) = row[0], case let .text(name) = row[1], case let .text(argText) = row[2],
                                  case let .int(attempts) = row[3] else { continue }
                            // Counted before the claim, so a stop waits for a call whose claim is in flight.
                            guard begin() else { break }
                            // Claim: whoever deletes the row runs it.
                            let claimed: Bool
                            do {
                                claimed = try await store.write { tx in try delete(tx, id: id) }
                            } catch {
                                end()
                                throw error
                            }
                            guard claimed else {
                                end()
                                continue
                            }
                            Task { [self] in
                                await call(name, argText: argText, attempts: attempts)
                                end()
                            }
                        }
                    }
                } catch {
                    logger.warning("scheduler: \(error)")
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }

        /// Runs one claimed schedule; a failure is retried (a new row) while attempts remain.
        private func call(_ name: String, argText: String, attempts: Int64) async {
            let args = (try? JSONParser.parse(argText)) ?? .object([])
            do {
                _ = try await functions.call(name, args: args, auth: .anonymous)
            } catch {
                let e = DataService.hostError(error)
                guard attempts + 1 < maxAttempts else {
                    logger.error("scheduled call \(name) failed (\(e.code): \(e.message)); giving up after \(maxAttempts) attempts")
                    return
                }
                let retryAt = nowMillis() + (1000 << attempts)
                do {
                    _ = try await functions.store.write { tx in try insert(tx, name: name, args: args, runAt: retryAt, attempts: attempts + 1) }
                    logger.warning("scheduled call \(name) failed (\(e.code): \(e.message)); retry \(attempts + 1) of \(maxAttempts - 1)")
                } catch {
                    logger.error("scheduled call \(name) failed (\(e.code): \(e.message)) and its retry could not be saved (\(error)): that call is lost")
                }
            }
        }

        private var isStopping: Bool { lock.withLock { stopping } }

        /// Takes a slot for a call about to be claimed; false once stopping.
        private func begin() -> Bool {
            lock.withLock {
                guard !stopping else { return false }
                running += 1
                return true
            }
        }

        private func end() {
            lock.withLock { running -= 1 }
        }

        /// A graceful stop: claims nothing more and waits for the running calls (their
        /// retries saved) for at most `timeout`, looking every 50 ms; calls still running
        /// then are lost with the host. Returns how many were still running.
        @discardableResult
        package func drain(timeout: Duration) async -> Int {
            lock.withLock { stopping = true }
            let deadline = ContinuousClock.now + timeout
            while lock.withLock({ running }) > 0, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(50))
            }
            let left = lock.withLock { running }
            if left > 0 { logger.warning("scheduler: \(left) scheduled calls still running at shutdown are lost (at most once)") }
            return left
        }
    }
}
