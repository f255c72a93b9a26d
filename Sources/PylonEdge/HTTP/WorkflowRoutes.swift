import Foundation
import Hummingbird
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// Pylon's workflow admin API (pylon-aux.md §2.3), admin-only as in Pylon (403 for
/// everyone else), served with functions (workflows are functions of kind `workflow`):
///
/// - `GET /api/workflows/definitions` → `[{name, description, max_retries, args_schema}]`
/// - `POST /api/workflows/start` `{"name", "input"?}` → 201 `{"id"}`; an unknown name is
///   400 WORKFLOW_START_FAILED.
/// - `GET /api/workflows?status=&limit=` (status pending, running, sleeping, waiting,
///   completed, failed or cancelled; limit 50, at most 200) → `[WorkflowInstance]`, newest first.
/// - `GET /api/workflows/:id` → the instance (Pylon's shape, ISO 8601 times), 404 unknown.
/// - `POST /api/workflows/:id/advance` → `{"status"}`: runs the next step now, unless the
///   instance sleeps until later or waits for an event.
/// - `POST /api/workflows/:id/event` `{"event", "data"?}` → `{"ok":true,"delivered":bool}`:
///   delivered to a workflow waiting for it, else kept until it waits (409 when finished or
///   when 100 events are already kept).
/// - `POST /api/workflows/:id/cancel` → `{"cancelled":true}` (409 when already finished).
extension RouteContext {
    static let workflowListLimit: Int64 = 200

    func addWorkflowRoutes(_ router: Router<PylonRequestContext>, _ workflows: WorkflowService) {
        let what = "the workflows API"
        router.get("/api/workflows/definitions") { req, _ in
            try await requireAdmin(req, what)
            return HTTPSupport.json(.array(workflows.definitions()))
        }
        router.post("/api/workflows/start") { req, _ in
            try await requireAdmin(req, what)
            let b = try await body(req)
            guard case .object = b, let name = b["name"]?.stringValue, !name.isEmpty else {
                throw HostError.badRequest("MISSING_FIELD", "start a workflow with {\"name\": \"workflowName\", \"input\": {...}}")
            }
            let id = try await workflows.start(name, input: b["input"].flatMap { $0 == .null ? nil : $0 } ?? .object([]))
            return HTTPSupport.json(.object([("id", .string(id))]), status: .created)
        }
        router.get("/api/workflows") { req, _ in
            try await requireAdmin(req, what)
            var status = try Self.oneParam(req, "status")?.lowercased()
            if status == "waitingforevent" { status = "waiting" }
            if let s = status, !WorkflowRecord.statuses.contains(s) {
                throw HostError.badRequest("INVALID_QUERY", "status must be one of \(WorkflowRecord.statuses.joined(separator: ", "))")
            }
            let limit = Int(min(try Self.intParam(req, "limit") ?? 50, Self.workflowListLimit))
            return HTTPSupport.json(.array(try await workflows.list(status: status, limit: limit).map(\.json)))
        }
        router.get("/api/workflows/:id") { req, ctx in
            try await requireAdmin(req, what)
            return HTTPSupport.json(try await workflows.instance(try ctx.parameters.require("id")).json)
        }
        router.post("/api/workflows/:id/advance") { req, ctx in
            try await requireAdmin(req, what)
            let status = try await workflows.nudge(try ctx.parameters.require("id"))
            return HTTPSupport.json(.object([("status", .string(status))]))
        }
        router.post("/api/workflows/:id/event") { req, ctx in
            try await requireAdmin(req, what)
            let id = try ctx.parameters.require("id")
            let b = try await body(req)
            guard case .object = b, let event = b["event"]?.stringValue, !event.isEmpty, event.utf8.count <= WorkflowRecord.eventNameBytes else {
                throw HostError.badRequest("MISSING_FIELD", "send an event with {\"event\": \"name\" (1–\(WorkflowRecord.eventNameBytes) bytes), \"data\": ...}")
            }
            let delivered = try await workflows.send(id, event: event, data: b["data"] ?? .null)
            return HTTPSupport.json(.object([("ok", true), ("delivered", .bool(delivered))]))
        }
        router.post("/api/workflows/:id/cancel") { req, ctx in
            try await requireAdmin(req, what)
            try await workflows.cancel(try ctx.parameters.require("id"))
            return HTTPSupport.json(.object([("cancelled", true)]))
        }
    }
}
