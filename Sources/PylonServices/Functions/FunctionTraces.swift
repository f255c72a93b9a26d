import Atomics
import Dispatch
import Foundation
import NIOConcurrencyHelpers
import PylonJSON

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

/// The most recent calls, in memory, for `GET /api/fn/traces`. Every call pushes one, so
/// pushing takes no lock shared by all calls: an atomic counter picks the slot, and each
/// slot has its own lock (two pushes meet at one slot only 500 pushes apart). The evicted
/// trace is freed after the slot's lock is released.
package final class FnTraceRing: Sendable {
    /// Also the most `GET /api/fn/traces` returns.
    package static let capacity = 500

    private let slots = (0..<FnTraceRing.capacity).map { _ in NIOLockedValueBox<FnTrace?>(nil) }
    /// Pushes so far; the next goes to `pushed % capacity`.
    private let pushed = ManagedAtomic<Int>(0)

    func push(_ trace: FnTrace) {
        let n = pushed.loadThenWrappingIncrement(ordering: .relaxed)
        var evicted: FnTrace? = trace
        slots[n % Self.capacity].withLockedValue { swap(&$0, &evicted) }
        _ = evicted
    }

    /// Up to `limit` traces, newest first (a push racing this one may or may not be among them).
    func recent(_ limit: Int) -> [FnTrace] {
        let end = pushed.load(ordering: .relaxed)
        var out: [FnTrace] = []
        out.reserveCapacity(min(limit, Self.capacity))
        var n = end
        while out.count < limit, n > 0, n > end - Self.capacity {
            n -= 1
            // Empty: a push that took this slot has not stored its trace yet.
            guard let t = slots[n % Self.capacity].withLockedValue({ $0 }) else { continue }
            out.append(t)
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
