import PylonCore
import PylonJSON

/// The app's workflows (functions of kind `workflow`), as both the admin routes and
/// `ctx.workflows.start` need them: what exists, and each one's retry limit.
extension FunctionService {
    /// The workflow functions: [{name, description, max_retries, args_schema}].
    package func workflowDefinitions() -> [JSONValue] {
        let all = (try? JSONParser.parse(list()))?.arrayValue ?? []
        return all.filter { $0["fn_type"]?.stringValue == "workflow" }.map { d in
            .object([("name", d["name"] ?? .null), ("description", d["description"] ?? .string("")),
                     ("max_retries", d["max_retries"] ?? .int(3)), ("args_schema", d["args_schema"] ?? .null)])
        }
    }

    /// The retry limit of workflow `name`; 400 WORKFLOW_START_FAILED when no workflow has
    /// that name (Pylon's code for a start that cannot begin).
    package func workflowMaxRetries(_ name: String) throws -> Int64 {
        guard let def = workflowDefinitions().first(where: { $0["name"]?.stringValue == name }) else {
            throw HostError.badRequest("WORKFLOW_START_FAILED", "no workflow named \"\(name)\"; GET /api/workflows/definitions lists them")
        }
        return def["max_retries"]?.intValue ?? 3
    }
}
