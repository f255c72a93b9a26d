import PylonJSON

/// A scheduled task declared in the manifest's `cron` list (ours; Pylon registers tasks in
/// code only): `{"name", "schedule", "function"?, "args"?, "timezone"?, "enabled"?,
/// "queue"?, "priority"?, "max_retries"?}`. Each occurrence enqueues a durable job running
/// `function` (default: the task's name) with `args`, or, without them, Pylon's payload
/// `{"scheduled": true, "timestamp": ISO time}`. `ManifestValidator` checks the
/// expression (`CronExpression`) and the IANA time zone.
public struct CronTask: Sendable {
    public var name: String
    public var schedule: String
    public var function: String
    public var args: JSONValue?
    /// An IANA zone name; the wall clock the expression reads (default UTC).
    public var timezone: String
    /// The manifest's default; an operator's enable/disable is kept in the store.
    public var enabled: Bool
    public var queue: String?
    public var priority: String?
    public var maxRetries: Int?

    public init(name: String, schedule: String, function: String? = nil, args: JSONValue? = nil, timezone: String = "UTC",
                enabled: Bool = true, queue: String? = nil, priority: String? = nil, maxRetries: Int? = nil) {
        self.name = name
        self.schedule = schedule
        self.function = function ?? name
        self.args = args
        self.timezone = timezone
        self.enabled = enabled
        self.queue = queue
        self.priority = priority
        self.maxRetries = maxRetries
    }
}

extension ManifestDecoder {
    /// The `cron` list's shapes.
    func cronTasks(_ r: JSONValue) throws(ManifestError) -> [CronTask] {
        var tasks: [CronTask] = []
        for (n, v) in try arr(r, "cron", "$", required: false).enumerated() {
            let p = "$.cron[\(n)]"
            let o = try obj(v, p)
            let name = try str(o, "name", p)
            let tp = "\(p)(\(name))"
            var retries: Int?
            if let m = o["max_retries"], !m.isNull {
                guard let i = m.intValue else { throw fail("\(tp).max_retries", "expected an integer") }
                retries = Int(i)
            }
            tasks.append(CronTask(name: name, schedule: try str(o, "schedule", tp), function: try optStr(o, "function", tp),
                                  args: o["args"].flatMap { $0.isNull ? nil : $0 }, timezone: try optStr(o, "timezone", tp) ?? "UTC",
                                  enabled: try bool(o, "enabled", tp, default: true), queue: try optStr(o, "queue", tp),
                                  priority: try optStr(o, "priority", tp), maxRetries: retries))
        }
        return tasks
    }
}
