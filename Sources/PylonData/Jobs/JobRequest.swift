import Foundation
import PylonCore
import PylonJSON

/// Job priorities, Pylon's names and numbers: higher runs first.
package enum JobPriority: Int64, CaseIterable, Sendable {
    case low = 0, normal = 1, high = 2, critical = 3

    package var name: String {
        switch self {
        case .low: "low"
        case .normal: "normal"
        case .high: "high"
        case .critical: "critical"
        }
    }

    package static func parse(_ v: JSONValue?) throws -> JobPriority {
        switch v {
        case nil, .null?: return .normal
        case let .string(s)?:
            if let p = allCases.first(where: { $0.name == s.lowercased() }) { return p }
        case let .int(i)?:
            if let p = JobPriority(rawValue: i) { return p }
        default: break
        }
        throw HostError.badRequest("INVALID_PRIORITY", "priority must be one of low, normal, high, critical (or 0–3)")
    }
}

/// A job to enqueue, checked: from `POST /api/jobs` (Pylon's body: `name`, `payload`,
/// `priority`, `delay_secs`, `max_retries`, `queue`, plus `idempotency_key` and `delay_ms`)
/// or from `ctx.jobs.enqueue` (the same fields, `args` for the payload).
package struct JobRequest: Sendable {
    package var name: String
    package var payload: JSONValue
    package var priority: JobPriority
    package var queue: String
    package var delayMs: Int64
    package var maxRetries: Int64
    package var idempotencyKey: String?
    /// Who asked: "api", "function" or "cron:NAME".
    package var origin: String

    package static let maxRetryLimit: Int64 = 25
    package static let maxDelayMs: Int64 = 366 * 86_400_000
    package static let maxNameBytes = 200
    package static let maxQueueBytes = 64
    package static let maxKeyBytes = 200

    package init(name: String, payload: JSONValue, priority: JobPriority = .normal, queue: String = "default", delayMs: Int64 = 0,
                 maxRetries: Int64 = 3, idempotencyKey: String? = nil, origin: String) {
        self.name = name
        self.payload = payload
        self.priority = priority
        self.queue = queue
        self.delayMs = delayMs
        self.maxRetries = maxRetries
        self.idempotencyKey = idempotencyKey
        self.origin = origin
    }

    /// `body`, checked; every problem is a 400 with a stable code.
    package static func parse(_ body: JSONValue, payloadKey: String, origin: String) throws -> JobRequest {
        guard case .object = body else { throw HostError.badRequest("INVALID_JOB", "the job must be a JSON object: {\"name\": \"fnName\", \"payload\": {...}}") }
        guard let name = body["name"]?.stringValue, !name.isEmpty else {
            throw HostError.badRequest("MISSING_FIELD", "a job needs \"name\": the function (mutation or action) that runs it")
        }
        guard name.utf8.count <= maxNameBytes else { throw HostError.badRequest("INVALID_JOB", "the job name is longer than \(maxNameBytes) bytes") }
        let queue = try text(body["queue"], "queue", max: maxQueueBytes) ?? "default"
        guard queue.utf8.allSatisfy({ c in (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E || c == 0x3A }) else {
            throw HostError.badRequest("INVALID_QUEUE", "a queue name uses letters, digits, '-', '_', '.' and ':' only")
        }
        let key = try text(body["idempotency_key"], "idempotency_key", max: maxKeyBytes)
        var delay: Int64 = 0
        if let ms = body["delay_ms"], ms != .null {
            delay = try number(ms, "delay_ms", scale: 1)
        } else if let s = body["delay_secs"], s != .null {
            delay = try number(s, "delay_secs", scale: 1000)
        }
        guard delay <= maxDelayMs else { throw HostError.badRequest("INVALID_DELAY", "a job's delay is at most 366 days") }
        var retries: Int64 = 3
        if let r = body["max_retries"], r != .null {
            guard let n = r.intValue, n >= 0, n <= maxRetryLimit else {
                throw HostError.badRequest("INVALID_RETRIES", "max_retries must be an integer from 0 to \(maxRetryLimit)")
            }
            retries = n
        }
        return JobRequest(name: name, payload: body[payloadKey].flatMap { $0 == .null ? nil : $0 } ?? .object([]),
                          priority: try JobPriority.parse(body["priority"]), queue: queue, delayMs: delay, maxRetries: retries,
                          idempotencyKey: key, origin: origin)
    }

    package static func text(_ v: JSONValue?, _ field: String, max: Int) throws -> String? {
        switch v {
        case nil, .null?: return nil
        case let .string(s)? where !s.isEmpty && s.utf8.count <= max: return s
        default: throw HostError.badRequest("INVALID_JOB", "\(field) must be a non-empty string of at most \(max) bytes")
        }
    }

    package static func number(_ v: JSONValue, _ field: String, scale: Double) throws -> Int64 {
        let d: Double? = switch v {
        case let .int(i): Double(i)
        case let .double(x): x
        default: nil
        }
        guard let d, d.isFinite, d >= 0, d * scale <= Double(maxDelayMs) else {
            throw HostError.badRequest("INVALID_DELAY", "\(field) must be a number from 0 up to 366 days")
        }
        return Int64(d * scale)
    }
}
