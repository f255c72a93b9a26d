import PylonJSON

/// The jobs, scheduler and workflow routes (`JobRoutes`, `WorkflowRoutes`), described when
/// functions are served.
extension OpenAPIDocument {
    static let job = object([
        ("id", string), ("name", string), ("payload", anyValue),
        ("priority", ["enum": ["low", "normal", "high", "critical"]]),
        ("status", ["enum": ["pending", "retrying", "running", "completed", "dead", "cancelled"]]),
        ("max_retries", count), ("retry_count", count), ("created_at", string), ("started_at", nullable(string)),
        ("completed_at", nullable(string)), ("error", nullable(string)), ("delay_secs", count), ("queue", string),
        ("run_at", nullable(string)), ("lease_until", nullable(string)), ("idempotency_key", nullable(string)), ("origin", string),
        ("attempts", ["type": "array", "items": object([("at", string), ("error", string), ("retry_in_ms", nullable(count))])]),
    ], required: ["id", "name", "status"])

    static let jobPaths: [(String, JSONValue)] = {
        let tags = ["jobs"]
        let jobList: JSONValue = ["type": "array", "items": job]
        let idParam = pathParam("id")
        let enqueue = object([
            ("name", ["type": "string", "minLength": 1]), ("payload", anyValue), ("priority", ["enum": ["low", "normal", "high", "critical"]]),
            ("delay_secs", ["type": "number", "minimum": 0]), ("max_retries", ["type": "integer", "minimum": 0, "maximum": 25]),
            ("queue", ["type": "string", "minLength": 1, "maxLength": 64]), ("idempotency_key", ["type": "string", "minLength": 1]),
        ], required: ["name"])
        let accepted = ok(object([("id", string), ("status", string), ("duplicate", boolean)], required: ["id", "status"]))
        let task = object([("name", string), ("expr", string), ("enabled", boolean), ("last_run", nullable(string)),
                           ("next_run", nullable(string)), ("timezone", string), ("function", string),
                           ("origin", ["enum": ["manifest", "function"]])])
        return [
            ("/api/jobs", .object([
                ("post", op("enqueueJob", "enqueue a durable job", access: .admin, tags: tags, body: body(enqueue),
                            responses: [("201", accepted), ("200", accepted)])),
                ("get", op("listJobs", "jobs, newest first", access: .admin, tags: tags,
                           parameters: [query("status", string, "pending, retrying, running, completed, failed, dead or cancelled"),
                                        query("queue", string, "one queue"), query("limit", count, "at most this many (default 50, max 200)")],
                           responses: [("200", ok(jobList))])),
            ])),
            ("/api/jobs/stats", ["get": op("jobStats", "counts by status and queue", access: .admin, tags: tags,
                                           responses: [("200", ok(anyValue))])]),
            ("/api/jobs/dead", ["get": op("deadJobs", "the dead letter", access: .admin, tags: tags,
                                          parameters: [query("limit", count, "at most this many (default 50, max 200)")],
                                          responses: [("200", ok(jobList))])]),
            ("/api/jobs/{id}", ["get": op("getJob", "one job", access: .admin, tags: tags, parameters: [idParam],
                                          responses: [("200", ok(job))])]),
            ("/api/jobs/dead/{id}/retry", ["post": op("retryDeadJob", "put a dead job back in its queue", access: .admin, tags: tags,
                                                      parameters: [idParam], responses: [("200", ok(anyValue))], errors: ["409"])]),
            ("/api/jobs/{id}/cancel", ["post": op("cancelJob", "cancel a pending or running job", access: .admin, tags: tags,
                                                  parameters: [idParam], responses: [("200", ok(anyValue))], errors: ["409"])]),
            ("/api/scheduler", ["get": op("cronTasks", "the cron tasks: the manifest's and those functions registered (ctx.cron.register)", access: .admin, tags: tags,
                                          responses: [("200", ok(["type": "array", "items": task]))])]),
            ("/api/scheduler/trigger/{name}", ["post": op("triggerCron", "run a cron task's job now", access: .admin, tags: tags,
                                                          parameters: [pathParam("name")], responses: [("200", ok(anyValue))])]),
            ("/api/scheduler/{name}/enable", ["post": op("enableCron", "enable a cron task", access: .admin, tags: tags,
                                                         parameters: [pathParam("name")], responses: [("200", ok(anyValue))])]),
            ("/api/scheduler/{name}/disable", ["post": op("disableCron", "disable a cron task", access: .admin, tags: tags,
                                                          parameters: [pathParam("name")], responses: [("200", ok(anyValue))])]),
        ]
    }()

    static let workflowStep = object([
        ("step_id", string), ("name", string), ("status", ["enum": ["Completed", "Failed"]]), ("output", anyValue),
        ("error", nullable(string)), ("started_at", string), ("completed_at", string), ("duration_ms", count), ("retry_count", count),
    ], required: ["step_id", "name", "status"])

    static let workflow = object([
        ("id", string), ("name", string), ("input", anyValue),
        ("status", ["enum": ["Pending", "Running", "Sleeping", "WaitingForEvent", "Completed", "Failed", "Cancelled"]]),
        ("steps", ["type": "array", "items": workflowStep]), ("output", anyValue), ("error", nullable(string)),
        ("created_at", string), ("started_at", nullable(string)), ("completed_at", nullable(string)), ("wake_at", nullable(string)),
        ("waiting_for", nullable(string)), ("current_step", count), ("max_retries", count), ("pending_events", count),
    ], required: ["id", "name", "status", "steps"])

    static let workflowPaths: [(String, JSONValue)] = {
        let tags = ["workflows"]
        let idParam = pathParam("id")
        let definition = object([("name", string), ("description", string), ("max_retries", count), ("args_schema", anyValue)])
        let start = object([("name", ["type": "string", "minLength": 1]), ("input", anyValue)], required: ["name"])
        let event = object([("event", ["type": "string", "minLength": 1, "maxLength": 200]), ("data", anyValue)], required: ["event"])
        return [
            ("/api/workflows/definitions", ["get": op("workflowDefinitions", "the workflow functions", access: .admin, tags: tags,
                                                      responses: [("200", ok(["type": "array", "items": definition]))])]),
            ("/api/workflows/start", ["post": op("startWorkflow", "start a workflow instance", access: .admin, tags: tags, body: body(start),
                                                 responses: [("201", ok(object([("id", string)], required: ["id"])))])]),
            ("/api/workflows", ["get": op("listWorkflows", "workflow instances, newest first", access: .admin, tags: tags,
                                          parameters: [query("status", string, "pending, running, sleeping, waiting, completed, failed or cancelled"),
                                                       query("limit", count, "at most this many (default 50, max 200)")],
                                          responses: [("200", ok(["type": "array", "items": workflow]))])]),
            ("/api/workflows/{id}", ["get": op("getWorkflow", "one workflow instance", access: .admin, tags: tags, parameters: [idParam],
                                               responses: [("200", ok(workflow))])]),
            ("/api/workflows/{id}/advance", ["post": op("advanceWorkflow", "run the next step now (not during a sleep or a wait)", access: .admin,
                                                        tags: tags, parameters: [idParam],
                                                        responses: [("200", ok(object([("status", string)], required: ["status"])))], errors: ["409"])]),
            ("/api/workflows/{id}/event", ["post": op("sendWorkflowEvent", "deliver an event (kept until the workflow waits for it)", access: .admin,
                                                      tags: tags, parameters: [idParam], body: body(event),
                                                      responses: [("200", ok(object([("ok", boolean), ("delivered", boolean)], required: ["ok"])))],
                                                      errors: ["409"])]),
            ("/api/workflows/{id}/cancel", ["post": op("cancelWorkflow", "cancel a workflow instance", access: .admin, tags: tags,
                                                       parameters: [idParam], responses: [("200", ok(object([("cancelled", boolean)])))],
                                                       errors: ["409"])]),
        ]
    }()
}
