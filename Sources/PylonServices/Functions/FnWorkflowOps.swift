import PylonCore
import PylonData
import PylonJSON

/// `ctx.workflows` from a function: `workflow_start` (`name`, `input`) → `{"id"}` and
/// `workflow_event` (`workflow_id`, `event`, `data`) → `{"delivered": bool}` (whether it
/// woke a workflow waiting for it; else it is kept until the workflow waits, as
/// `POST /api/workflows/:id/event` does). Inside the function's transaction when it is a
/// mutation (a rolled-back mutation starts nothing and delivers nothing), in a write of
/// their own from an action; queries cannot (READ_ONLY). The job runner picks the advance
/// up at its next poll.
enum FnWorkflowOps {
    static func run(_ op: FnOp, functions: FunctionService, in tx: WriteTransaction) throws -> JSONValue {
        let table = WorkflowStore(dialect: tx.dialect)
        if op.op == "workflow_event" {
            guard let id = op.raw["workflow_id"]?.stringValue, !id.isEmpty else {
                throw HostError.badRequest("INVALID_OP", "sendEvent needs the id ctx.workflows.start returned")
            }
            guard let event = op.raw["event"]?.stringValue, !event.isEmpty, event.utf8.count <= WorkflowRecord.eventNameBytes else {
                throw HostError.badRequest("INVALID_OP", "sendEvent needs an event name of 1–\(WorkflowRecord.eventNameBytes) bytes")
            }
            let delivered = try table.send(tx, id: id, event: event, data: op.raw["data"] ?? .null)
            return .object([("delivered", .bool(delivered))])
        }
        guard let name = op.raw["name"]?.stringValue, !name.isEmpty else {
            throw HostError.badRequest("INVALID_OP", "ctx.workflows.start needs the name of a workflow")
        }
        let input = op.raw["input"].flatMap { $0 == .null ? nil : $0 } ?? .object([])
        let id = try table.start(tx, name: name, input: input, maxRetries: try functions.workflowMaxRetries(name))
        return .object([("id", .string(id))])
    }
}
