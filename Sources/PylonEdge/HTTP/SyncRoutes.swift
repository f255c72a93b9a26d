import Foundation
import HTTPTypes
import Hummingbird
import PylonJSON

/// Pylon's sync routes: `GET /api/sync/pull` (the change log from a cursor) and
/// `POST /api/sync/push` (a client's queued writes).
extension RouteContext {
    func addSyncRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/sync/pull") { req, _ in
            let since = try Self.intParam(req, "since") ?? 0
            // Clamped to 1...1000 like the cursor route's 1...100: 0 (Pylon's SSR helper sends
            // `since=0&limit=0`; Pylon ignores `limit`) reads one change, so a client that
            // follows `has_more` always moves on. A negative or non-number is 400 INVALID_QUERY.
            let requested = try Self.intParam(req, "limit") ?? 100
            let limit = Int(min(requested, 1000))
            let epoch = req.uri.queryParameters.get("epoch").map { String($0) }
            let page = try await changes.pull(since: since, limit: limit, epoch: epoch)
            // The cursor advances over events the caller may not read; they are just not sent.
            let who = try await auth(req)
            let visible: [String] = page.events.compactMap { e in
                e.visibleJSON { data.canRead(e.entity, $0, auth: who) }
            }
            var w = JSONWriter(reserving: 256 + page.events.count * 200)
            w.raw("{\"changes\":[")
            for (i, e) in visible.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(e)
            }
            w.raw("],\"cursor\":{\"last_seq\":\(page.lastSeq),\"epoch\":")
            w.writeString(changes.epoch)
            w.raw("},\"has_more\":\(page.hasMore)}")
            return HTTPSupport.bytes(w.bytes)
        }
        router.post("/api/sync/push") { req, _ in
            // Policy-checked per change, exactly like the entity routes (Pylon: admin-only).
            let result = try await data.push(try await body(req), auth: try await auth(req))
            let (_, newest) = try await changes.bounds()
            return HTTPSupport.json(.object([
                ("applied", .int(Int64(result.applied))), ("deduped", .int(Int64(result.deduped))),
                ("errors", .array(result.errors.map { .string($0) })),
                ("cursor", .object([("last_seq", .int(newest))])),
                ("id_map", .object(result.idMap.map { ($0.0, .string($0.1)) })),
                ("results", .array(result.results)),
            ]))
        }
    }
}
