import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON

/// `ctx.scheduler`: durable scheduled function calls. A schedule is a row of
/// `_pylon_schedules`, written by the scheduling function's own transaction (so a
/// mutation that rolls back schedules nothing) and deleted by `cancel`. Every host polls
/// for due rows and claims each by deleting it before running it, so a call runs once,
/// even with several hosts on one Postgres database, and survives restarts; a host that
/// dies while running one loses that run (at most once). A failed run is retried twice
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

    /// Polls for due schedules and runs them, until cancelled.
    package static func run(_ functions: FunctionService, logger: Logger) async {
        let store = functions.store
        let d = store.dialect
        let due = "SELECT \(d.quote("id")), \(d.quote("fn_name")), \(d.quote("args")), \(d.quote("attempts")) FROM \(d.quote(table)) WHERE \(d.quote("run_at")) <= \(d.placeholder(1)) ORDER BY \(d.quote("run_at")) LIMIT 32"
        let none = Array("[]".utf8)
        while !Task.isCancelled {
            // An app without functions has nothing to run: no store query every tick.
            if functions.list() == none {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                let now = nowMillis()
                let rows = try await store.read { conn in try conn.execute(due, [.int(now)]).rows }
                for row in rows {
                    guard row.count == 4, case let .text(id) = row[0], case let .text(name) = row[1], case let .text(argText) = row[2],
                          case let .int(attempts) = row[3] else { continue }
                    // Claim: whoever deletes the row runs it.
                    let claimed = try await store.write { tx in try delete(tx, id: id) }
                    guard claimed else { continue }
                    Task {
                        do {
                            let args = (try? JSONParser.parse(argText)) ?? .object([])
                            _ = try await functions.call(name, args: args, auth: .anonymous)
                        } catch {
                            let e = DataService.hostError(error)
                            if attempts + 1 < maxAttempts {
                                let retryAt = nowMillis() + (1000 << attempts)
                                _ = try? await store.write { tx in try insert(tx, name: name, args: (try? JSONParser.parse(argText)) ?? .object([]), runAt: retryAt, attempts: attempts + 1) }
                                logger.warning("scheduled call \(name) failed (\(e.code): \(e.message)); retry \(attempts + 1) of \(maxAttempts - 1)")
                            } else {
                                logger.error("scheduled call \(name) failed (\(e.code): \(e.message)); giving up after \(maxAttempts) attempts")
                            }
                        }
                    }
                }
            } catch {
                logger.warning("scheduler: \(error)")
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}
