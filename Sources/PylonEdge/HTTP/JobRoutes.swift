import Foundation
import Hummingbird
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// Pylon's job and scheduler admin API (pylon-aux.md §2.1–2.2), admin-only as in Pylon
/// (403 for everyone else), served when a plugin serves functions (the jobs' handlers):
///
/// - `POST /api/jobs` `{"name", "payload"?, "priority"?, "delay_secs"?, "max_retries"?,
///   "queue"?, "idempotency_key"?}` → 201 `{"id","status":"pending"}`; a key seen before →
///   200 with that job's id and status and `"duplicate": true`.
/// - `GET /api/jobs?status=&queue=&limit=` (limit 50, at most 200; dead jobs included),
///   `GET /api/jobs/:id`, `GET /api/jobs/stats`, `GET /api/jobs/dead?limit=`.
/// - `POST /api/jobs/dead/:id/retry` → `{"retried":true,"id"}`; `POST /api/jobs/:id/cancel`
///   → `{"cancelled":true,"id"}` (404 unknown, 409 already finished or not dead).
/// - `GET /api/scheduler` → `[{name, expr, enabled, last_run, next_run, timezone, function}]`;
///   `POST /api/scheduler/trigger/:name` → `{"triggered":true,"task","job_id"}`;
///   `POST /api/scheduler/:name/enable` and `/disable` → `{"name","enabled"}`.
extension RouteContext {
    static let jobStatuses: Set<String> = ["pending", "retrying", "running", "completed", "failed", "dead", "cancelled"]
    static let jobListLimit: Int64 = 200

    func addJobRoutes(_ router: Router<PylonRequestContext>, _ jobs: JobService, _ cron: CronService) {
        let what = "the jobs API"
        router.post("/api/jobs") { req, _ in
            try await requireAdmin(req, what)
            let request = try JobRequest.parse(try await body(req), payloadKey: "payload", origin: "api")
            let r = try await jobs.enqueue(request)
            var out: [(String, JSONValue)] = [("id", .string(r.id)), ("status", .string(r.status))]
            if !r.created { out.append(("duplicate", true)) }
            return HTTPSupport.json(.object(out), status: r.created ? .created : .ok)
        }
        router.get("/api/jobs") { req, _ in
            try await requireAdmin(req, what)
            let status = try Self.oneParam(req, "status")
            if let status, !Self.jobStatuses.contains(status) {
                throw HostError.badRequest("INVALID_QUERY", "status must be one of \(Self.jobStatuses.sorted().joined(separator: ", "))")
            }
            let queue = try Self.oneParam(req, "queue")
            let limit = Int(min(try Self.intParam(req, "limit") ?? 50, Self.jobListLimit))
            let store = jobs.jobs
            return HTTPSupport.json(.array(try await jobs.store.read { conn in try store.list(conn, status: status, queue: queue, limit: limit) }))
        }
        router.get("/api/jobs/stats") { req, _ in
            try await requireAdmin(req, what)
            let store = jobs.jobs
            let (byStatus, queues) = try await jobs.store.read { conn in try store.stats(conn) }
            let handlers = ((try? JSONParser.parse(functions?.list() ?? [])) ?? .array([])).arrayValue?.compactMap { $0["name"] } ?? []
            var out: [(String, JSONValue)] = ["pending", "retrying", "running", "completed", "dead", "cancelled"].map { ($0, .int(byStatus[$0] ?? 0)) }
            out.append(("failed", .int(byStatus["dead"] ?? 0)))
            out.append(("handlers", .array(handlers)))
            out.append(("queues", .object(queues.keys.sorted().map { q in
                (q, .object([("limit", .int(Int64(jobs.limit(q))))] + (queues[q] ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) }))
            })))
            return HTTPSupport.json(.object(out))
        }
        router.get("/api/jobs/dead") { req, _ in
            try await requireAdmin(req, what)
            let limit = Int(min(try Self.intParam(req, "limit") ?? 50, Self.jobListLimit))
            let store = jobs.jobs
            return HTTPSupport.json(.array(try await jobs.store.read { conn in try store.list(conn, status: "dead", queue: nil, limit: limit) }))
        }
        router.get("/api/jobs/:id") { req, ctx in
            try await requireAdmin(req, what)
            let id = try ctx.parameters.require("id")
            let store = jobs.jobs
            guard let job = try await jobs.store.read({ conn in try store.job(conn, id: id) }) else { throw HostError.notFound("no job \(id)") }
            return HTTPSupport.json(job)
        }
        router.post("/api/jobs/dead/:id/retry") { req, ctx in
            try await requireAdmin(req, what)
            let id = try ctx.parameters.require("id")
            try await jobs.retryDead(id)
            return HTTPSupport.json(.object([("retried", true), ("id", .string(id))]))
        }
        router.post("/api/jobs/:id/cancel") { req, ctx in
            try await requireAdmin(req, what)
            let id = try ctx.parameters.require("id")
            try await jobs.cancel(id)
            return HTTPSupport.json(.object([("cancelled", true), ("id", .string(id))]))
        }
        let scheduler = "the scheduler API"
        router.get("/api/scheduler") { req, _ in
            try await requireAdmin(req, scheduler)
            return HTTPSupport.json(try await cron.list())
        }
        router.post("/api/scheduler/trigger/:name") { req, ctx in
            try await requireAdmin(req, scheduler)
            let name = try ctx.parameters.require("name")
            let id = try await cron.trigger(name)
            return HTTPSupport.json(.object([("triggered", true), ("task", .string(name)), ("job_id", .string(id))]))
        }
        for (verb, on) in [("enable", true), ("disable", false)] {
            router.post(RouterPath("/api/scheduler/:name/\(verb)")) { req, ctx in
                try await requireAdmin(req, scheduler)
                let name = try ctx.parameters.require("name")
                try await cron.setEnabled(name, on)
                return HTTPSupport.json(.object([("name", .string(name)), ("enabled", .bool(on))]))
            }
        }
    }

    /// A text query parameter given at most once.
    static func oneParam(_ request: Request, _ name: String) throws(HostError) -> String? {
        let given = request.uri.queryParameters.getAll(name)
        guard given.count <= 1 else {
            throw HostError.badRequest("INVALID_QUERY", "query parameter \(name) is given \(given.count) times; give it once")
        }
        return given.first.flatMap { $0.isEmpty ? nil : String($0) }
    }
}
