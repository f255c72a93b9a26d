import Foundation
import Hummingbird

extension RouteContext {
    /// `/api/fn` (pylon-core.md §2.12) when a plugin serves `pylon.functions/1`; without
    /// one, the capability stub answers 501.
    func addFunctionRoutes(_ router: Router<PylonRequestContext>) {
        guard let functions else { return }
        router.get("/api/fn") { req, _ in
            try await requireAdmin(req, "listing functions")
            return HTTPSupport.bytes(functions.list())
        }
        router.post("/api/fn/:name") { req, ctx in
            let name = try ctx.parameters.require("name")
            let args = try await body(req, empty: .object([]))
            let who = try await auth(req)
            metrics.add("fn_calls_total", 1)
            return HTTPSupport.bytes(try await functions.call(name, args: args, auth: who))
        }
    }
}
