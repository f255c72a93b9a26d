import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// Organisations (pylon-aux.md §1.3 `select-org`, §1.12 orgs), at Pylon's paths under
/// `/api/auth/`: `orgs` (create, list), `orgs/:id` (get, rename, delete), `orgs/:id/members`
/// (list; `:user` change role, remove), `orgs/:id/invites` (send, list; `:invite` revoke) and
/// `invites/:token/accept`. The host keeps them (`Organisations`); invites are emailed with
/// the `ORG_INVITE` template through `pylon.auth.code/1`.
///
/// Who may call: reading needs any of the user's credentials (session, JWT or API key);
/// changing anything needs a session (an API key: 403 API_KEY_AUTH_FORBIDDEN; a JWT: 403
/// SESSION_REQUIRED), as for the other credentials of the account. The admin token belongs
/// to no organisation (403). Every `orgs/:id…` route answers 404 ORG_NOT_FOUND to a caller
/// who is not a member, whether or not the organisation exists; a member whose role does not
/// allow the call gets 403 FORBIDDEN.
///
/// `select-org`: the caller's session acts in one of their organisations, which policies
/// see as `auth.tenantId`. A member is one made by these routes, or — as in Pylon — one with
/// a row `{userId, orgId}` of the app's own `OrgMember` entity when the manifest declares
/// it; `{"orgId": null}` leaves the organisation. A session only; not a member: 403
/// `NOT_A_MEMBER`, the same whether or not the organisation exists.
extension RouteContext {
    static let sessionEnded = HostError(status: 401, code: "SESSION_EXPIRED", message: "the session has ended; sign in again")

    func addOrgRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/select-org") { req, _ in
            let user = try await sessionUser(req)
            guard let token = callerToken(req) else { throw Self.sessionEnded }
            let b = try await body(req)
            guard let given = b["orgId"] else {
                throw HostError.badRequest("MISSING_FIELD", "the body needs \"orgId\" (an organisation id, or null to leave it)")
            }
            var org: String?
            if !given.isNull {
                guard let id = given.stringValue, !id.isEmpty, id.count <= 256 else {
                    throw HostError.badRequest("INVALID_DATA", "orgId must be a non-empty string or null")
                }
                org = id
            }
            let chosen = org
            switch try await sessions.selectTenant(token, chosen, allowed: { conn in try chosen.map { try isMember(user, of: $0, on: conn) } ?? true }) {
            case .selected: break
            case .noSession: throw Self.sessionEnded
            case .refused: throw HostError(status: 403, code: "NOT_A_MEMBER", message: "you are not a member of this organisation")
            }
            return HTTPSupport.json(.object([("tenantId", org.map { .string($0) } ?? .null)]))
        }
        addOrgCRUDRoutes(router)
        addOrgMemberRoutes(router)
        addOrgInviteRoutes(router)
    }

    /// Whether `user` belongs to `org` now (a JWT minted in it acts in it only while so).
    func isMember(_ user: String, of org: String) async throws -> Bool {
        try await data.store.read { conn in try isMember(user, of: org, on: conn) }
    }

    /// Whether `user` belongs to `org`, read on `conn` (inside `select-org`'s write): a
    /// membership of these routes, or a row of the app's `OrgMember` entity (when the
    /// manifest declares one with userId and orgId).
    func isMember(_ user: String, of org: String, on conn: StoreConnection) throws -> Bool {
        if try orgs.role(of: user, in: org, on: conn) != nil { return true }
        guard let codec = data.codecs[Organisations.appMemberEntity], Organisations.isAppMembership(codec.entity) else { return false }
        let filter: JSONValue = .object([("userId", .string(user)), ("orgId", .string(org))])
        return !(try data.query(Organisations.appMemberEntity, filter: filter, on: conn)).isEmpty
    }

    private func addOrgCRUDRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/orgs") { req, _ in
            let user = try await orgWriter(req)
            let org = try await orgs.create(name: try Self.orgName(try await body(req)), by: user)
            return HTTPSupport.json(org.json(role: .owner))
        }
        router.get("/api/auth/orgs") { req, _ in
            let user = try await orgReader(req)
            return HTTPSupport.json(.array(try await orgs.orgs(of: user).map { $0.org.json(role: $0.role) }))
        }
        router.get("/api/auth/orgs/:id") { req, ctx in
            let user = try await orgReader(req)
            let (org, role) = try await orgs.org(try Self.orgID(ctx), for: user)
            return HTTPSupport.json(org.json(role: role))
        }
        router.patch("/api/auth/orgs/:id") { req, ctx in
            let user = try await orgWriter(req)
            let id = try Self.orgID(ctx)
            let name = try Self.orgName(try await body(req))
            let (org, role) = try await orgs.rename(id, to: name, by: user)
            return HTTPSupport.json(org.json(role: role))
        }
        router.delete("/api/auth/orgs/:id") { req, ctx in
            let user = try await orgWriter(req)
            try await orgs.delete(try Self.orgID(ctx), by: user)
            return HTTPSupport.json(.object([("deleted", true)]))
        }
    }

    private func addOrgMemberRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/auth/orgs/:id/members") { req, ctx in
            let user = try await orgReader(req)
            return HTTPSupport.json(.array(try await orgs.members(of: try Self.orgID(ctx), for: user).map(\.json)))
        }
        // Pylon changes a role with PUT; PATCH does the same.
        let setRole: @Sendable (Request, PylonRequestContext) async throws -> Response = { req, ctx in
            let user = try await orgWriter(req)
            let id = try Self.orgID(ctx)
            let target = ctx.parameters.get("user") ?? ""
            let role = try Organisations.Role.parse(try await body(req)["role"]?.stringValue)
            let member = try await orgs.setRole(org: id, target: target, role: role, by: user)
            return HTTPSupport.json(.object([("updated", true), ("user_id", .string(member.userID)), ("role", .string(member.role.rawValue))]))
        }
        router.put("/api/auth/orgs/:id/members/:user", use: setRole)
        router.patch("/api/auth/orgs/:id/members/:user", use: setRole)
        router.delete("/api/auth/orgs/:id/members/:user") { req, ctx in
            let user = try await orgWriter(req)
            try await orgs.remove(org: try Self.orgID(ctx), target: ctx.parameters.get("user") ?? "", by: user)
            return HTTPSupport.json(.object([("removed", true)]))
        }
    }

    private func addOrgInviteRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/orgs/:id/invites") { req, ctx in
            let user = try await orgWriter(req)
            let id = try Self.orgID(ctx)
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            let role = try Organisations.Role.parse(b["role"].flatMap { $0.isNull ? nil : ($0.stringValue ?? "") } ?? "member")
            // Each invite is an email anyone's owner or admin can make the host send: counted in
            // the send bucket per address, and per invited address (no one is flooded).
            try authLimiter.check(.send, client: client(req, ctx), account: email.value)
            guard codes != nil || config.dev else {
                throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                                message: "invites are sent by email, which needs a plugin serving pylon.auth.code/1 (libPylonAuthMagicCode.so in --plugins); see the README's Email section")
            }
            let (token, invite, orgName) = try await orgs.invite(org: id, email: email, role: role, by: user,
                                                                 existingUser: (try? await passwords.user(withEmail: email)) ?? nil)
            let url = "\(publicURL)/api/auth/invites/\(token)/accept"
            if let codes {
                do {
                    try await codes.send("ORG_INVITE", to: email.value, vars: [("org_name", .string(orgName)), ("url", .string(url)),
                                                                              ("email", .string(email.value))])
                } catch {
                    // In --dev the token is in the answer, so a failed delivery is not an error (as Pylon).
                    guard config.dev else {
                        try? await orgs.discardInvite(invite.id)
                        throw error
                    }
                }
            }
            guard case let .object(fields) = invite.json else { return HTTPSupport.json(invite.json) }
            // The link and token only in --dev (Pylon's `accept_url`, `token`); otherwise they
            // exist only in the email, so only the invited address can use them.
            return HTTPSupport.json(.object(fields.filter { $0.0 != "token_prefix" && $0.0 != "invited_by" }
                                            + devEcho([("accept_url", url), ("token", token)])))
        }
        router.get("/api/auth/orgs/:id/invites") { req, ctx in
            let user = try await orgReader(req)
            return HTTPSupport.json(.array(try await orgs.invites(of: try Self.orgID(ctx), for: user).map(\.json)))
        }
        router.delete("/api/auth/orgs/:id/invites/:invite") { req, ctx in
            let user = try await orgWriter(req)
            guard try await orgs.revokeInvite(org: try Self.orgID(ctx), id: ctx.parameters.get("invite") ?? "", by: user) else {
                throw Organisations.inviteNotFound
            }
            return HTTPSupport.json(.object([("revoked", true)]))
        }
        router.post("/api/auth/invites/:token/accept") { req, ctx in
            let user = try await orgWriter(req)
            // Tokens are 256-bit random, so guessing is hopeless; still, each try is counted.
            try authLimiter.check(.verify, client: client(req, ctx))
            let member = try await orgs.accept(token: ctx.parameters.get("token") ?? "", user: user,
                                               email: try await passwords.email(ofUser: user))
            return HTTPSupport.json(.object([("org_id", .string(member.orgID)), ("role", .string(member.role.rawValue))]))
        }
    }

    /// The signed-in user reading organisations: any of their credentials, not the admin
    /// token (which is nobody's member) and not anonymous.
    private func orgReader(_ req: Request) async throws -> String {
        let who = try await auth(req)
        if who.isAdmin { throw HostError.forbidden("the admin token belongs to no organisation; call this as a user") }
        guard let user = who.userID else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in first: send Authorization: Bearer <session token> or the session cookie")
        }
        return user
    }

    /// The signed-in user changing organisations: a session of a user, not a guest's.
    private func orgWriter(_ req: Request) async throws -> String {
        let user = try await sessionUser(req)
        if user.hasPrefix("guest_") {
            throw HostError(status: 403, code: "GUEST_FORBIDDEN", message: "a guest cannot do this; sign up or sign in first")
        }
        return user
    }

    /// The `:id` of an organisation route; one longer than any id is no organisation.
    private static func orgID(_ ctx: PylonRequestContext) throws(HostError) -> String {
        guard let id = ctx.parameters.get("id"), !id.isEmpty, id.utf8.count <= 256 else { throw Organisations.notFound }
        return id
    }

    /// An organisation's name from `{"name"}`: trimmed, not empty, at most 200 characters.
    private static func orgName(_ body: JSONValue) throws(HostError) -> String {
        let name = body["name"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        guard !name.isEmpty else { throw HostError.badRequest("MISSING_NAME", "the body needs \"name\", the organisation's name") }
        guard name.count <= Organisations.maxNameLength, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw HostError.badRequest("INVALID_DATA", "name must be at most \(Organisations.maxNameLength) characters, without control characters")
        }
        return name
    }
}
