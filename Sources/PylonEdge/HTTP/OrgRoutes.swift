import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// `POST /api/auth/select-org` (pylon-aux.md §1.3): the caller's session acts in one of the
/// organisations they belong to, which policies then see as `auth.tenantId`. Membership is
/// a row `{userId, orgId}` of the app's `OrgMember` entity, as in Pylon; `{"orgId": null}`
/// leaves the organisation. A session only (an API key or the admin token: 403); not a
/// member: 403 `NOT_A_MEMBER`, the same whether or not the organisation exists.
extension RouteContext {
    static let orgMemberEntity = "OrgMember"
    static let sessionEnded = HostError(status: 401, code: "SESSION_EXPIRED", message: "the session has ended; sign in again")

    func addOrgRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/select-org") { req, _ in
            let user = try await sessionUser(req)
            guard let token = Self.token(req, cookieName: config.cookieName) else { throw Self.sessionEnded }
            let b = try await body(req)
            guard let given = b["orgId"] else {
                throw HostError.badRequest("MISSING_FIELD", "the body needs \"orgId\" (an organisation id, or null to leave it)")
            }
            var org: String?
            if !given.isNull {
                guard let id = given.stringValue, !id.isEmpty, id.count <= 256 else {
                    throw HostError.badRequest("INVALID_DATA", "orgId must be a non-empty string or null")
                }
                guard let codec = data.codecs[Self.orgMemberEntity],
                      Set(codec.entity.fields.map(\.name)).isSuperset(of: ["userId", "orgId"]) else {
                    throw HostError(status: 501, code: "ORGS_UNAVAILABLE",
                                    message: "organisations need an entity \"OrgMember\" with string fields userId and orgId in the manifest")
                }
                let filter: JSONValue = .object([("userId", .string(user)), ("orgId", .string(id))])
                guard !(try await data.query(Self.orgMemberEntity, filter: filter)).isEmpty else {
                    throw HostError(status: 403, code: "NOT_A_MEMBER", message: "you are not a member of this organisation")
                }
                org = id
            }
            guard try await sessions.selectTenant(token, org) else { throw Self.sessionEnded }
            return HTTPSupport.json(.object([("tenantId", org.map { .string($0) } ?? .null)]))
        }
    }
}
