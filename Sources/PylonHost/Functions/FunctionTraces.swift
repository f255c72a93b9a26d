import Dispatch
import Foundation

/// One `ctx.db` operation of a traced call (an element of `ops` in `GET /api/fn/traces`).
struct FnOpTrace: Sendable {
    var op: String
    var entity: String
    var id: String?
    var durationMs: Double
    /// Rows the operation returned (reads only).
    var rowCount: Int?
    var ok: Bool

    /// How many rows a read returned; nil for writes.
    static func rowCount(_ op: String, _ result: JSONValue) -> Int? {
        switch op {
        case "get", "lookup": result.isNull ? 0 : 1
        case "list", "query": result.arrayValue?.count
        case "paginate": result["page"]?.arrayValue?.count
        case "search": result["hits"]?.arrayValue?.count
        case "query_graph": result.objectValue?.reduce(0) { $0 + ($1.1.arrayValue?.count ?? 0) }
        default: nil
        }
    }

    var json: JSONValue {
        var o: [(String, JSONValue)] = [("op", .string(op)), ("entity", .string(entity))]
        if let id { o.append(("id", .string(id))) }
        o.append(("duration_ms", .double(durationMs)))
        if let rowCount { o.append(("row_count", .int(Int64(rowCount)))) }
        o.append(("ok", .bool(ok)))
        return .object(o)
    }
}

/// One `ctx.scheduler.runAfter` / `runAt` of a traced call.
struct FnScheduleTrace: Sendable {
    var fnName: String
    var delayMs: Int64?
    var runAt: Int64?

    var json: JSONValue {
        var o: [(String, JSONValue)] = [("fn_name", .string(fnName))]
        if let delayMs { o.append(("delay_ms", .int(delayMs))) }
        if let runAt { o.append(("run_at", .int(runAt))) }
        return .object(o)
    }
}

/// What a running call has done so far. Owned by its `FnCall`, under that call's lock.
/// Bounded: past `maxDetails` operations (or schedules) only the count grows.
struct FnTraceBuilder {
    static let maxDetails = 100

    var ops: [FnOpTrace] = []
    var opsOmitted = 0
    var schedules: [FnScheduleTrace] = []
    var schedulesOmitted = 0
    var streamBytes = 0
    var streamChunks = 0

    mutating func record(_ op: FnOpTrace) {
        if ops.count < Self.maxDetails { ops.append(op) } else { opsOmitted += 1 }
    }

    mutating func record(_ schedule: FnScheduleTrace) {
        if schedules.count < Self.maxDetails { schedules.append(schedule) } else { schedulesOmitted += 1 }
    }

    mutating func recordStream(bytes: Int) {
        streamBytes += bytes
        streamChunks += 1
    }
}

/// A finished call, as `GET /api/fn/traces` reports it (Pylon's trace shape, with
/// `ops_omitted` / `schedules_omitted` counting what the bounds left out).
struct FnTrace: Sendable {
    enum Outcome: Sendable {
        case ok
        case error(code: String, message: String)
        /// A mutation that failed after its transaction began.
        case rolledBack(code: String, message: String)
    }

    var callID: UInt64
    var fnName: String
    var kind: Int32
    var userID: String?
    /// Unix milliseconds.
    var startedAt: Int64
    var durationMs: Double
    var outcome: Outcome
    var details: FnTraceBuilder

    var json: JSONValue {
        let outcomeJSON: JSONValue = switch outcome {
        case .ok: .object([("status", "ok")])
        case let .error(code, message): .object([("status", "error"), ("code", .string(code)), ("message", .string(message))])
        case let .rolledBack(code, message): .object([("status", "rolled_back"), ("code", .string(code)), ("message", .string(message))])
        }
        return .object([
            ("call_id", .string("c_\(callID)")), ("fn_name", .string(fnName)),
            ("fn_type", .string(FunctionService.kindName(kind))), ("user_id", userID.map { .string($0) } ?? .null),
            ("started_at", .int(startedAt)), ("duration_ms", .double(durationMs)), ("outcome", outcomeJSON),
            ("ops", .array(details.ops.map(\.json))), ("ops_omitted", .int(Int64(details.opsOmitted))),
            ("stream_bytes", .int(Int64(details.streamBytes))), ("stream_chunks", .int(Int64(details.streamChunks))),
            ("schedules", .array(details.schedules.map(\.json))), ("schedules_omitted", .int(Int64(details.schedulesOmitted))),
        ])
    }
}

/// The most recent calls, in memory, for `GET /api/fn/traces`. Pushing is O(1) under a
/// lock held only to swap one slot (the evicted trace is freed after the lock is released).
final class FnTraceRing: @unchecked Sendable {
    /// Also the most `GET /api/fn/traces` returns.
    static let capacity = 500

    private let lock = NSLock()
    private var slots: [FnTrace?] = Array(repeating: nil, count: FnTraceRing.capacity)
    /// Where the next trace goes.
    private var next = 0

    func push(_ trace: FnTrace) {
        var evicted: FnTrace? = trace
        lock.lock()
        swap(&slots[next], &evicted)
        next = (next + 1) % Self.capacity
        lock.unlock()
        _ = evicted
    }

    /// Up to `limit` traces, newest first.
    func recent(_ limit: Int) -> [FnTrace] {
        lock.lock()
        defer { lock.unlock() }
        var out: [FnTrace] = []
        out.reserveCapacity(min(limit, Self.capacity))
        var i = next
        while out.count < limit {
            i = (i + Self.capacity - 1) % Self.capacity
            guard let t = slots[i] else { break }
            out.append(t)
            if i == next { break }
        }
        return out
    }
}

/// Times one `ctx.db` operation and records it into its call's trace when answered.
struct FnOpTimer: Sendable {
    let call: FnCall
    let op: FnOp
    let started = DispatchTime.now().uptimeNanoseconds

    func finish(_ result: JSONValue?) {
        let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        call.recordOp(op, durationMs: ms, result: result)
    }
}
