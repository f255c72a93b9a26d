import Foundation
import PylonPluginABI
import PylonCore
import PylonJSON

/// `ctx.shards` in server functions (actions and workflows; a shard is a side effect outside
/// any transaction): `shard_create` `{sim, id?, config?, settings?, players?}` → the shard
/// (`players`: its roster, checked as on `POST /api/shards`),
/// `shard_get` `{id}` → the shard or null, `shard_input` `{id, subscriber_id, input,
/// client_seq?}` → `{"accepted": true, "seq"}`. A function is the app's trusted code, as
/// the admin's routes are: it creates shards and sends input as any subscriber (attached or
/// not); the sim's own `authorize_input` still sees the function's caller. A shard's roster
/// (`ShardRoster`) guards the routes, not functions: `get` and `input` reach any shard, so
/// an action that hands them to its callers checks the players itself (the shard's
/// `players`).
enum ShardFnOps {
    static let ops: Set<String> = ["shard_create", "shard_get", "shard_input"]

    static func run(_ op: FnOp, kind: Int32, shards: ShardRegistry?, auth: AuthContext) async throws -> JSONValue {
        guard kind == PYLON_FN_ACTION || kind == PYLON_FN_WORKFLOW else {
            throw HostError.badRequest("SHARDS_IN_ACTIONS_ONLY", "ctx.shards is for actions (a shard is not part of a transaction); call it from an action")
        }
        guard let shards else {
            throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                            message: "\(PYLON_CAP_SHARD_SIM) is not configured: put a sim plugin (see examples/shard-arena) in the plugins folder")
        }
        let v = op.raw
        func id() throws(HostError) -> String {
            guard let id = v["id"]?.stringValue else { throw HostError.badRequest("INVALID_OP", "\(op.op) needs the shard's id (a string)") }
            return id
        }
        switch op.op {
        case "shard_create":
            guard let sim = v["sim"]?.stringValue else { throw HostError.badRequest("INVALID_OP", "ctx.shards.create needs a sim name") }
            let config = v["config"] ?? .null
            guard config == .null || config.objectValue != nil else {
                throw HostError.badRequest("INVALID_SHARD_CONFIG", "the shard's config must be an object (the sim's own settings)")
            }
            let settings = try ShardSettings.parse(v["settings"] ?? .object([]))
            let roster = try ShardRoster.requested(in: v)
            let given = v["id"] ?? .null
            return try await shards.create(sim: sim, id: given == .null ? nil : try id(), config: config == .null ? .object([]) : config,
                                           settings: settings, roster: roster).json
        case "shard_get":
            return shards.get(try id())?.json ?? .null
        default:
            let id = try id()
            guard let shard = shards.get(id) else {
                throw HostError(status: 404, code: "SHARD_NOT_FOUND", message: "no shard \(id.prefix(128)) is running")
            }
            guard let sid = v["subscriber_id"]?.stringValue, ShardNames.valid(sid) else {
                throw HostError.badRequest("INVALID_SID", "ctx.shards.input needs a subscriber id: 1..128 of letters, digits, '_', '-', '.', ':' and '@'")
            }
            guard let input = v["input"] else { throw HostError.badRequest("INPUT_REQUIRED", "ctx.shards.input needs the input") }
            let clientSeq = v["client_seq"]?.intValue.flatMap { $0 >= 0 ? UInt64($0) : nil }
            let seq = try shard.push(sid: sid, input: JSONWriter.encode(input), auth: auth, clientSeq: clientSeq)
            return .object([("accepted", .bool(true)), ("seq", .int(Int64(clamping: seq)))])
        }
    }
}
