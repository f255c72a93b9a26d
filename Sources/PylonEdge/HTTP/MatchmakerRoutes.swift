import Foundation
import Hummingbird
import PylonCore
import PylonServices
import PylonJSON

/// The matchmaker over HTTP (pylon-aux.md §5.6 has only the library; these routes are ours,
/// with Pylon's status shapes). Every route acts for the signed-in caller: the player is the
/// caller's user id, so no one can queue, dequeue or ack for someone else.
///
/// - `POST /api/shards/matchmaker/enqueue` `{"criteria"?: {"mode"?, …}}`: waits for a group;
///   answers the status. Again while waiting: nothing changes (one place per player).
/// - `GET /api/shards/matchmaker/status`: `{"status":"idle"}` |
///   `{"status":"queued","position","waiting_secs"}` | `{"status":"matched","shard_id"}`.
/// - `POST /api/shards/matchmaker/dequeue`: leaves the queue, `{"dequeued": bool}`.
/// - `POST /api/shards/matchmaker/ack`: clears the assignment, `{"acked": bool}`.
extension RouteContext {
    func addMatchmakerRoutes(_ router: Router<PylonRequestContext>, _ matchmaker: Matchmaker) {
        router.post("/api/shards/matchmaker/enqueue") { req, _ -> Response in
            let player = try await self.player(req)
            let body = try await self.body(req, empty: .object([]))
            guard body.objectValue != nil else { throw HostError.badRequest("INVALID_BODY", #"send {"criteria": {"mode"?: string, ...}}"#) }
            let criteria = body["criteria"] ?? .null
            return HTTPSupport.json(try matchmaker.enqueue(player: player, criteria: criteria == .null ? .object([]) : criteria))
        }
        router.get("/api/shards/matchmaker/status") { req, _ -> Response in
            let player = try await self.player(req)
            return HTTPSupport.json(matchmaker.status(player: player))
        }
        router.post("/api/shards/matchmaker/dequeue") { req, _ -> Response in
            let player = try await self.player(req)
            return HTTPSupport.json(.object([("dequeued", .bool(matchmaker.dequeue(player: player)))]))
        }
        router.post("/api/shards/matchmaker/ack") { req, _ -> Response in
            let player = try await self.player(req)
            return HTTPSupport.json(.object([("acked", .bool(matchmaker.ack(player: player)))]))
        }
    }

    /// The caller as a player: its user id. The admin token stands for no player.
    private func player(_ req: Request) async throws -> String {
        let auth = try await auth(req)
        guard !auth.isAdmin else {
            throw HostError(status: 403, code: "NOT_A_PLAYER", message: "the admin token is no player; queue with a user's session token")
        }
        guard let user = auth.userID else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "the matchmaker queues users: send Authorization: Bearer <session token>")
        }
        guard ShardNames.valid(user) else {
            throw HostError.badRequest("INVALID_SID", "your user id cannot name a shard subscriber (1..128 of letters, digits, '_', '-', '.', ':' and '@')")
        }
        return user
    }
}
