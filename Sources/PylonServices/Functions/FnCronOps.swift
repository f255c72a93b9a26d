import Foundation
import PylonCore
import PylonData
import PylonJSON
import PylonPluginABI

/// `ctx.cron` from a function: `cron_register` (`name`, `schedule`, `function`, `timezone`,
/// `payload`) → `{"registered": bool}` (false: the same definition was there already) and
/// `cron_unregister` (`name`) → `{"removed": bool}`. Inside the function's transaction
/// when it is a mutation (a rolled-back mutation registers and removes nothing), in a
/// write of their own from an action; queries cannot (READ_ONLY). Every host's cron
/// ticker reads the tasks from the store (`CronService`), so a registration takes effect
/// everywhere at the next tick.
enum FnCronOps {
    static let nameBytes = 200
    /// Every tick reads the registered tasks with their payloads: kept small.
    static let payloadBytes = 8 * 1024

    static func run(_ op: FnOp, functions: FunctionService, in tx: WriteTransaction) throws -> JSONValue {
        let store = CronTaskStore(dialect: tx.dialect)
        let taken = Set(functions.data.manifest.cron.map(\.name))
        let name = try taskName(op)
        if op.op == "cron_unregister" {
            return .object([("removed", .bool(try store.unregister(tx, name: name, taken: taken)))])
        }
        let task = try validated(op, name: name, functions: functions)
        return .object([("registered", .bool(try store.register(tx, task, taken: taken)))])
    }

    static func taskName(_ op: FnOp) throws -> String {
        guard let name = op.raw["name"]?.stringValue, !name.isEmpty, name.utf8.count <= nameBytes,
              !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw HostError.badRequest("INVALID_OP", "ctx.cron needs a task name of 1–\(nameBytes) bytes without control characters")
        }
        return name
    }

    /// The task `op` describes, checked as the manifest's are: an expression that parses
    /// and fires (CRON_INVALID), an IANA zone (CRON_TIMEZONE_INVALID), a mutation or action
    /// the functions plugin serves (FN_NOT_FOUND, FN_IS_WORKFLOW, FN_IS_QUERY), a JSON
    /// payload of at most 8 KiB (every tick reads it).
    static func validated(_ op: FnOp, name: String, functions: FunctionService) throws -> RegisteredCronTask {
        guard let schedule = op.raw["schedule"]?.stringValue else {
            throw HostError.badRequest("CRON_INVALID", "ctx.cron.register needs a cron expression, e.g. \"*/5 * * * *\" or \"@daily\"")
        }
        let given = op.raw["timezone"].flatMap { $0.isNull ? nil : $0 }
        let zoneName = given == nil ? "UTC" : given?.stringValue ?? ""
        guard let zone = zone(zoneName) else {
            throw HostError.badRequest("CRON_TIMEZONE_INVALID",
                                       "\"\(zoneName.prefix(64))\" is not an IANA time zone; use a name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\"")
        }
        let expr: CronExpression
        do {
            expr = try CronExpression(schedule)
        } catch {
            throw HostError.badRequest("CRON_INVALID", "\(error)")
        }
        guard expr.next(after: Date(), in: zone) != nil else {
            throw HostError.badRequest("CRON_INVALID", "\"\(expr.text)\" matches no date (e.g. the 30th of February); fix the day or month")
        }
        guard let function = op.raw["function"]?.stringValue, !function.isEmpty else {
            throw HostError.badRequest("INVALID_OP", "ctx.cron.register needs {function}: the mutation or action each occurrence runs")
        }
        try functions.requireJobHandler(function, runner: "a cron task", notFound: "FN_NOT_FOUND")
        var payload: String?
        if let p = op.raw["payload"], !p.isNull {
            let text = JSONWriter.string(p)
            guard text.utf8.count <= payloadBytes else {
                throw HostError(status: 413, code: "PAYLOAD_TOO_LARGE", message: "a cron task's payload is at most \(payloadBytes / 1024) KiB of JSON")
            }
            payload = text
        }
        return RegisteredCronTask(name: name, schedule: expr.text, function: function, timezone: zoneName, payload: payload)
    }

    /// `name` as a zone, when it looks like an IANA name (letters, digits, `_+-`, `/`
    /// between parts; no dots, so no `..`): nothing else reaches the zone database's file lookup.
    static func zone(_ name: String) -> TimeZone? {
        let allowed = name.utf8.count <= 64 && !name.isEmpty && name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "_+-/".unicodeScalars.contains($0)
        }
        guard allowed, !name.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0.hasPrefix("-") }) else { return nil }
        return TimeZone(identifier: name)
    }
}
