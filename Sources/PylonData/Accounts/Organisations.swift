import Crypto
import Foundation
import PylonCore
import PylonJSON

/// Organisations (Pylon's `/api/auth/orgs`, pylon-aux.md §1.12): teams of users, each member
/// an owner, an admin or a member. A session acts in one of its user's organisations
/// (`select-org`), which policies see as `auth.tenantId`.
///
/// The host keeps them in its own tables (`_pylon_orgs`, `_pylon_org_members`,
/// `_pylon_org_invites`), on every store, with change-log entries for organisations and
/// memberships. Every change runs in one write transaction that first re-reads the caller's
/// role, so a check and the change it allows cannot be split by another request (the last
/// owner can never be removed or demoted, even by two owners at once).
///
/// Who may do what: any member reads the organisation and its members; owners and admins
/// rename it, change roles, remove members and manage invites; only an owner deletes it,
/// makes or touches another owner, or invites one. Anyone may leave, except its last owner.
package final class Organisations: Sendable {
    package enum Role: String, Sendable {
        case owner, admin, member

        /// Owners and admins manage members and invites.
        package var manages: Bool { self != .member }

        /// A role given in a request; 400 BAD_ROLE for anything else.
        package static func parse(_ text: String?) throws(HostError) -> Role {
            guard let text, let role = Role(rawValue: text) else {
                throw HostError.badRequest("BAD_ROLE", "role must be owner, admin or member")
            }
            return role
        }
    }

    package struct Org: Sendable {
        package let id: String
        package let name: String
        package let createdBy: String
        package let createdAt: Int64

        /// Pylon's shape, with the caller's role in it.
        package func json(role: Role) -> JSONValue {
            .object([("id", .string(id)), ("name", .string(name)), ("created_at", .int(createdAt)), ("role", .string(role.rawValue))])
        }

        var row: JSONValue {
            .object([("id", .string(id)), ("name", .string(name)), ("created_by", .string(createdBy)), ("created_at", .int(createdAt))])
        }
    }

    package struct Member: Sendable {
        package let orgID: String
        package let userID: String
        package let role: Role
        package let joinedAt: Int64

        package var json: JSONValue {
            .object([("user_id", .string(userID)), ("role", .string(role.rawValue)), ("joined_at", .int(joinedAt))])
        }

        var row: JSONValue {
            .object([("org_id", .string(orgID)), ("user_id", .string(userID)), ("role", .string(role.rawValue)), ("joined_at", .int(joinedAt))])
        }

        var rowID: String { "\(orgID)/\(userID)" }
    }

    package struct Invite: Sendable {
        package let id: String
        package let orgID: String
        package let email: String
        package let role: Role
        package let invitedBy: String
        package let tokenPrefix: String
        package let createdAt: Int64
        package let expiresAt: Int64

        package var json: JSONValue {
            .object([("id", .string(id)), ("email", .string(email)), ("role", .string(role.rawValue)),
                     ("token_prefix", .string(tokenPrefix)), ("invited_by", .string(invitedBy)),
                     ("created_at", .int(createdAt)), ("expires_at", .int(expiresAt))])
        }
    }

    /// Organisations one user may have made and still exist.
    package static let maxCreatedPerUser = 100
    /// Pending invites one organisation may have at once.
    package static let maxPendingInvites = 100
    /// How long an invite works (Pylon: 7 days).
    package static let inviteLifetime: Int64 = 7 * 24 * 3600
    /// Longest organisation name.
    package static let maxNameLength = 200

    package static let orgEntity = SystemTables.orgs.name
    package static let memberEntity = SystemTables.orgMembers.name
    static let inviteTable = SystemTables.orgInvites.name

    package static let notFound = HostError(status: 404, code: "ORG_NOT_FOUND", message: "you are not a member of an organisation with this id")
    static let notAMember = HostError(status: 404, code: "NOT_A_MEMBER", message: "that user is not a member of this organisation")
    static let lastOwner = HostError.badRequest("LAST_OWNER", "an organisation needs an owner: make another member owner first")
    package static let inviteNotFound = HostError(status: 404, code: "INVITE_NOT_FOUND", message: "this invite does not exist, was used or was revoked; ask for a new one")

    static func forbidden(_ what: String) -> HostError {
        HostError(status: 403, code: "FORBIDDEN", message: "your role in this organisation does not allow \(what)")
    }

    private let store: StoreThreads
    private let dialect: SQLDialect

    package init(store: StoreThreads, dialect: SQLDialect) {
        self.store = store
        self.dialect = dialect
    }

    // MARK: organisations

    /// A new organisation named `name`, with `user` as its owner.
    package func create(name: String, by user: String) async throws -> Org {
        let org = Org(id: Self.newID("org_"), name: name, createdBy: user, createdAt: SessionStore.now())
        let s = sql
        try await store.write { tx in
            let made = try tx.connection.execute(s.countCreated, [.text(user)]).rows.first?.at(0).intValue ?? 0
            guard made < Int64(Self.maxCreatedPerUser) else {
                throw HostError.badRequest("ORG_LIMIT", "a user may have made at most \(Self.maxCreatedPerUser) organisations; delete one first")
            }
            try ChangeLog.write(tx, s.insertOrg, [.text(org.id), .text(org.name), .text(user), .int(org.createdAt)], mapError: { $0 },
                                entity: Self.orgEntity, rowID: org.id, kind: .insert, data: org.row, before: nil)
            try Self.insertMember(tx, s, Member(orgID: org.id, userID: user, role: .owner, joinedAt: org.createdAt))
        }
        return org
    }

    /// The organisations `user` belongs to, with their role in each, oldest first.
    package func orgs(of user: String) async throws -> [(org: Org, role: Role)] {
        let s = sql
        return try await store.read { conn in
            try conn.execute(s.orgsOfUser, [.text(user)]).rows.compactMap(Self.orgAndRole)
        }
    }

    /// Organisation `id` and `user`'s role in it; 404 ORG_NOT_FOUND when there is none or
    /// `user` is not a member (the same answer: a non-member learns nothing).
    package func org(_ id: String, for user: String) async throws -> (org: Org, role: Role) {
        let s = sql
        guard let found = try await store.read({ conn in try Self.membership(conn, s, id, user) }) else { throw Self.notFound }
        return found
    }

    /// `user`'s role in `org`, or nil.
    package func role(of user: String, in org: String) async throws -> Role? {
        let s = sql
        return try await store.read { conn in try Self.role(conn, s, org, user) }
    }

    /// `role(of:in:)` on `conn`, e.g. inside a write transaction that must see the
    /// membership as its own writes will.
    package func role(of user: String, in org: String, on conn: StoreConnection) throws -> Role? {
        try Self.role(conn, sql, org, user)
    }

    /// Renames `org` (owners and admins).
    package func rename(_ id: String, to name: String, by user: String) async throws -> (org: Org, role: Role) {
        let s = sql
        return try await store.write { tx in
            guard let (old, role) = try Self.membership(tx.connection, s, id, user) else { throw Self.notFound }
            guard role.manages else { throw Self.forbidden("renaming it (owners and admins can)") }
            let org = Org(id: old.id, name: name, createdBy: old.createdBy, createdAt: old.createdAt)
            try ChangeLog.write(tx, s.renameOrg, [.text(name), .text(id)], mapError: { $0 },
                                entity: Self.orgEntity, rowID: id, kind: .update, data: org.row, before: old.row)
            return (org, role)
        }
    }

    /// Deletes `org` with its memberships and invites (an owner only). Sessions acting in it
    /// act in none, and their streams end.
    package func delete(_ id: String, by user: String) async throws {
        let s = sql
        try await store.write { tx in
            guard let (org, role) = try Self.membership(tx.connection, s, id, user) else { throw Self.notFound }
            guard role == .owner else { throw Self.forbidden("deleting it (only an owner can)") }
            try Self.deleteOrg(tx, s, org)
        }
    }

    // MARK: members

    /// The members of `org`, oldest first (any member may list them).
    package func members(of org: String, for user: String) async throws -> [Member] {
        let s = sql
        return try await store.read { conn in
            guard try Self.role(conn, s, org, user) != nil else { throw Self.notFound }
            return try conn.execute(s.membersOfOrg, [.text(org)]).rows.compactMap(Self.member)
        }
    }

    /// Gives `target` the role `role`. Owners may change anyone; admins only admins and
    /// members, and cannot make an owner. The last owner keeps the role (400 LAST_OWNER).
    package func setRole(org: String, target: String, role: Role, by user: String) async throws -> Member {
        let s = sql
        return try await store.write { tx in
            guard let caller = try Self.role(tx.connection, s, org, user) else { throw Self.notFound }
            guard caller.manages else { throw Self.forbidden("changing roles (owners and admins can)") }
            guard let current = try Self.member(tx.connection, s, org, target) else { throw Self.notAMember }
            guard caller == .owner || (current.role != .owner && role != .owner) else {
                throw Self.forbidden("making or changing an owner (only an owner can)")
            }
            if current.role == .owner, role != .owner, try Self.owners(tx.connection, s, org) <= 1 { throw Self.lastOwner }
            let changed = Member(orgID: org, userID: target, role: role, joinedAt: current.joinedAt)
            if current.role != role {
                try ChangeLog.write(tx, s.updateRole, [.text(role.rawValue), .text(org), .text(target)], mapError: { $0 },
                                    entity: Self.memberEntity, rowID: changed.rowID, kind: .update, data: changed.row, before: current.row)
            }
            return changed
        }
    }

    /// Removes `target` from `org`: a member leaving (anyone but the last owner), or an
    /// owner or admin removing someone (an admin cannot remove an owner). The removed
    /// user's sessions acting in `org` act in none, and their streams end.
    package func remove(org: String, target: String, by user: String) async throws {
        let s = sql
        try await store.write { tx in
            guard let caller = try Self.role(tx.connection, s, org, user) else { throw Self.notFound }
            guard target == user || caller.manages else { throw Self.forbidden("removing members (owners and admins can)") }
            guard let member = try Self.member(tx.connection, s, org, target) else { throw Self.notAMember }
            if member.role == .owner {
                guard target == user || caller == .owner else { throw Self.forbidden("removing an owner (only an owner can)") }
                if try Self.owners(tx.connection, s, org) <= 1 { throw Self.lastOwner }
            }
            try SessionStore.clearTenant(tx, org, userID: target)
            try Self.deleteMember(tx, s, member)
        }
    }

    // MARK: the app's OrgMember rows

    /// The app's own membership entity, as in Pylon: a row `{userId, orgId}` of it makes
    /// its user a member of that organisation for `select-org`, beside the host's own
    /// memberships.
    package static let appMemberEntity = "OrgMember"

    /// Whether `entity` is the app's membership entity: named `OrgMember`, with `userId`
    /// and `orgId` fields.
    package static func isAppMembership(_ entity: Entity) -> Bool {
        entity.name == appMemberEntity && Set(entity.fields.map(\.name)).isSuperset(of: ["userId", "orgId"])
    }

    /// In `tx`, after the row `id` of the app's membership entity was deleted (`after`
    /// nil) or changed: when it no longer says its user belongs to its organisation and
    /// nothing else does (another such row, or a membership of the host's own), the user's
    /// sessions acting in that organisation act in none and their streams end — as when a
    /// membership of the host's own is removed (`remove`). `DataService.update` and
    /// `.delete` call it, and every write of an app row goes through them (CRUD, batch,
    /// transact, push, functions, import), so no path keeps a removed member acting in it.
    package static func appMembershipChanged(_ tx: WriteTransaction, _ entity: Entity, id: String, before: JSONValue, after: JSONValue?) throws {
        guard isAppMembership(entity), let user = before["userId"]?.stringValue, let org = before["orgId"]?.stringValue else { return }
        if let after, after["userId"]?.stringValue == user, after["orgId"]?.stringValue == org { return }
        let d = tx.dialect
        if try role(tx.connection, statements(d), org, user) != nil { return }
        // Another row for the same pair. This row is left out by its id: a store with
        // deferred writes (or a batching transaction) still shows it as it was.
        let other = "SELECT 1 FROM \(d.quote(appMemberEntity)) WHERE \(d.quote("userId")) = \(d.placeholder(1)) AND \(d.quote("orgId")) = \(d.placeholder(2)) "
            + "AND \(d.quote("id")) <> \(d.placeholder(3))" + d.limitOffset(limit: "1", offset: nil)
        if try !tx.connection.execute(other, [.text(user), .text(org), .text(id)]).rows.isEmpty { return }
        try SessionStore.clearTenant(tx, org, userID: user)
    }

    // MARK: invites

    /// A new invite of `email` to `org` with `role` (owners and admins; only an owner invites
    /// an owner). An earlier live invite of the same address to `org` stops working.
    /// `existingUser` is the user who has that email now, if any (already a member: 409).
    /// Returns the token (the only time it exists in plaintext), the invite and the
    /// organisation's name (for the email).
    package func invite(org: String, email: EmailAddress, role: Role, by user: String, existingUser: String?) async throws
        -> (token: String, invite: Invite, orgName: String) {
        let s = sql, now = SessionStore.now()
        let token = Self.newToken()
        let invite = Invite(id: Self.newID("inv_"), orgID: org, email: email.value, role: role, invitedBy: user,
                            tokenPrefix: String(token.prefix(8)), createdAt: now, expiresAt: now + Self.inviteLifetime)
        let name: String = try await store.write { tx in
            guard let (o, caller) = try Self.membership(tx.connection, s, org, user) else { throw Self.notFound }
            guard caller.manages else { throw Self.forbidden("inviting (owners and admins can)") }
            guard caller == .owner || role != .owner else { throw Self.forbidden("inviting an owner (only an owner can)") }
            // A new invite replaces the address's last one: an admin must not turn an
            // owner's invite to be owner into a lesser one.
            let earlier = try tx.connection.execute(s.invitedRoles, [.text(org), .int(now), .text(email.value)]).rows
            guard caller == .owner || !earlier.contains(where: { $0.at(0).textValue == Role.owner.rawValue }) else {
                throw Self.forbidden("replacing an invite to be owner (only an owner can)")
            }
            if let existingUser, try Self.role(tx.connection, s, org, existingUser) != nil {
                throw HostError(status: 409, code: "ALREADY_MEMBER", message: "the user with this email is already a member")
            }
            let pending = try tx.connection.execute(s.countPending, [.text(org), .int(now), .text(email.value)]).rows.first?.at(0).intValue ?? 0
            guard pending < Int64(Self.maxPendingInvites) else {
                throw HostError.badRequest("INVITE_LIMIT", "an organisation may have at most \(Self.maxPendingInvites) pending invites; revoke some first")
            }
            try tx.write(s.sweepInvites, [.text(org), .int(now), .text(email.value)])
            try tx.write(s.insertInvite, [.text(invite.id), .text(org), .text(invite.email), .text(role.rawValue), .text(user),
                                          .text(Self.digest(token)), .text(invite.tokenPrefix), .int(now), .int(invite.expiresAt)])
            return o.name
        }
        return (token, invite, name)
    }

    /// The pending invites of `org`, newest first (owners and admins).
    package func invites(of org: String, for user: String) async throws -> [Invite] {
        let s = sql
        return try await store.read { conn in
            guard let role = try Self.role(conn, s, org, user) else { throw Self.notFound }
            guard role.manages else { throw Self.forbidden("seeing invites (owners and admins can)") }
            return try conn.execute(s.invitesOfOrg, [.text(org), .int(SessionStore.now())]).rows.compactMap(Self.invite)
        }
    }

    /// Revokes invite `id` of `org` (owners and admins; only an owner revokes an invite to
    /// be owner); false when `org` has no such invite.
    package func revokeInvite(org: String, id: String, by user: String) async throws -> Bool {
        let s = sql
        return try await store.write { tx in
            guard let role = try Self.role(tx.connection, s, org, user) else { throw Self.notFound }
            guard role.manages else { throw Self.forbidden("revoking invites (owners and admins can)") }
            // Asked before deleting: a deferred-write store (D1) reports no row counts until commit.
            guard let found = try tx.connection.execute(s.findInvite, [.text(id), .text(org)]).rows.first else { return false }
            guard role == .owner || found.at(0).textValue != Role.owner.rawValue else {
                throw Self.forbidden("revoking an invite to be owner (only an owner can)")
            }
            try tx.write(s.deleteInvite, [.text(id), .text(org)])
            return true
        }
    }

    /// Removes an invite whose email could not be sent (nothing is left half-done).
    package func discardInvite(_ id: String) async throws {
        let s = sql
        try await store.write { tx in try tx.write(s.discardInvite, [.text(id)]) }
    }

    /// Uses invite `token` for `user`, whose email must be the one it was sent to: `user`
    /// joins with the invited role and the invite is gone. An unknown, used or revoked
    /// token: 404 INVITE_NOT_FOUND; expired: 410 INVITE_EXPIRED; another address: 403
    /// WRONG_EMAIL; a member already: 409 ALREADY_MEMBER (the invite stays for its addressee).
    package func accept(token: String, user: String, email: EmailAddress?) async throws -> Member {
        guard Self.isToken(token) else { throw Self.inviteNotFound }
        let s = sql, hash = Self.digest(token), now = SessionStore.now()
        return try await store.write { tx in
            guard let row = try tx.connection.execute(s.inviteByToken, [.text(hash)]).rows.first, let invite = Self.invite(row) else {
                throw Self.inviteNotFound
            }
            guard now < invite.expiresAt else {
                throw HostError(status: 410, code: "INVITE_EXPIRED", message: "this invite has expired; ask for a new one")
            }
            guard let email else {
                throw HostError.badRequest("NO_EMAIL", "your user has no email address; an invite is accepted by the user with the address it was sent to")
            }
            guard email.value == invite.email else {
                throw HostError(status: 403, code: "WRONG_EMAIL", message: "this invite was sent to another address; sign in as the user with that address")
            }
            if try Self.role(tx.connection, s, invite.orgID, user) != nil {
                throw HostError(status: 409, code: "ALREADY_MEMBER", message: "you are already a member of this organisation")
            }
            let member = Member(orgID: invite.orgID, userID: user, role: invite.role, joinedAt: now)
            try tx.write(s.discardInvite, [.text(invite.id)])
            try Self.insertMember(tx, s, member)
            return member
        }
    }

    // MARK: account deletion

    /// `user`'s memberships end (their account is being deleted); returns how many. Where
    /// they were the only owner, the longest-standing admin (else member) becomes owner;
    /// an organisation left with nobody is deleted with its invites.
    package func forget(userID user: String) async throws -> Int {
        let s = sql
        return try await store.write { tx in
            let memberships = try tx.connection.execute(s.membershipsOfUser, [.text(user)]).rows.compactMap(Self.member)
            for m in memberships {
                if m.role == .owner, try Self.owners(tx.connection, s, m.orgID) <= 1 {
                    if let heir = try tx.connection.execute(s.successor, [.text(m.orgID), .text(user)]).rows.first.flatMap(Self.member) {
                        let promoted = Member(orgID: heir.orgID, userID: heir.userID, role: .owner, joinedAt: heir.joinedAt)
                        try ChangeLog.write(tx, s.updateRole, [.text(Role.owner.rawValue), .text(heir.orgID), .text(heir.userID)], mapError: { $0 },
                                            entity: Self.memberEntity, rowID: promoted.rowID, kind: .update, data: promoted.row, before: heir.row)
                    } else if let (org, _) = try Self.membership(tx.connection, s, m.orgID, user) {
                        try Self.deleteOrg(tx, s, org)
                        continue
                    }
                }
                try Self.deleteMember(tx, s, m)
            }
            return memberships.count
        }
    }

    // MARK: statements and rows

    /// Every statement, quoted for the dialect once.
    private struct Statements: Sendable {
        let countCreated, insertOrg, renameOrg, deleteOrgRow, orgsOfUser, membership: String
        let insertMember, updateRole, deleteMemberRow, membersOfOrg, membershipsOfUser, memberRow, countOwners, successor: String
        let insertInvite, countPending, sweepInvites, invitedRoles, invitesOfOrg, findInvite, deleteInvite, discardInvite, deleteOrgInvites, inviteByToken: String
    }

    private var sql: Statements { Self.statements(dialect) }

    private static func statements(_ d: SQLDialect) -> Statements {
        func q(_ s: String) -> String { d.quote(s) }
        func p(_ n: Int) -> String { d.placeholder(n) }
        let orgs = q(Self.orgEntity), members = q(Self.memberEntity), invites = q(Self.inviteTable)
        let orgColumns = "o.\(q("id")), o.\(q("name")), o.\(q("created_by")), o.\(q("created_at"))"
        let memberColumns = [q("org_id"), q("user_id"), q("role"), q("joined_at")].joined(separator: ", ")
        let inviteColumns = ["id", "org_id", "email", "role", "invited_by", "token_prefix", "created_at", "expires_at"].map(q).joined(separator: ", ")
        let live = "\(q("expires_at")) > \(p(2))"
        return Statements(
            countCreated: "SELECT COUNT(*) FROM \(orgs) WHERE \(q("created_by")) = \(p(1))",
            insertOrg: "INSERT INTO \(orgs) (\(q("id")), \(q("name")), \(q("created_by")), \(q("created_at"))) VALUES (\(p(1)), \(p(2)), \(p(3)), \(p(4)))",
            renameOrg: "UPDATE \(orgs) SET \(q("name")) = \(p(1)) WHERE \(q("id")) = \(p(2))",
            deleteOrgRow: "DELETE FROM \(orgs) WHERE \(q("id")) = \(p(1))",
            orgsOfUser: "SELECT \(orgColumns), m.\(q("role")) FROM \(members) m JOIN \(orgs) o ON o.\(q("id")) = m.\(q("org_id")) "
                + "WHERE m.\(q("user_id")) = \(p(1)) ORDER BY o.\(q("created_at")), o.\(q("id"))",
            membership: "SELECT \(orgColumns), m.\(q("role")) FROM \(members) m JOIN \(orgs) o ON o.\(q("id")) = m.\(q("org_id")) "
                + "WHERE m.\(q("org_id")) = \(p(1)) AND m.\(q("user_id")) = \(p(2))",
            insertMember: "INSERT INTO \(members) (\(memberColumns)) VALUES (\(p(1)), \(p(2)), \(p(3)), \(p(4)))",
            updateRole: "UPDATE \(members) SET \(q("role")) = \(p(1)) WHERE \(q("org_id")) = \(p(2)) AND \(q("user_id")) = \(p(3))",
            deleteMemberRow: "DELETE FROM \(members) WHERE \(q("org_id")) = \(p(1)) AND \(q("user_id")) = \(p(2))",
            membersOfOrg: "SELECT \(memberColumns) FROM \(members) WHERE \(q("org_id")) = \(p(1)) ORDER BY \(q("joined_at")), \(q("user_id"))",
            membershipsOfUser: "SELECT \(memberColumns) FROM \(members) WHERE \(q("user_id")) = \(p(1)) ORDER BY \(q("org_id"))",
            memberRow: "SELECT \(memberColumns) FROM \(members) WHERE \(q("org_id")) = \(p(1)) AND \(q("user_id")) = \(p(2))",
            countOwners: "SELECT COUNT(*) FROM \(members) WHERE \(q("org_id")) = \(p(1)) AND \(q("role")) = 'owner'",
            successor: "SELECT \(memberColumns) FROM \(members) WHERE \(q("org_id")) = \(p(1)) AND \(q("user_id")) <> \(p(2)) "
                + "ORDER BY CASE \(q("role")) WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, \(q("joined_at")), \(q("user_id"))"
                + d.limitOffset(limit: "1", offset: nil),
            insertInvite: "INSERT INTO \(invites) (\(["id", "org_id", "email", "role", "invited_by", "token_hash", "token_prefix", "created_at", "expires_at"].map(q).joined(separator: ", "))) "
                + "VALUES (\((1...9).map(p).joined(separator: ", ")))",
            countPending: "SELECT COUNT(*) FROM \(invites) WHERE \(q("org_id")) = \(p(1)) AND \(live) AND \(q("email")) <> \(p(3))",
            sweepInvites: "DELETE FROM \(invites) WHERE \(q("org_id")) = \(p(1)) AND (\(q("expires_at")) <= \(p(2)) OR \(q("email")) = \(p(3)))",
            invitedRoles: "SELECT \(q("role")) FROM \(invites) WHERE \(q("org_id")) = \(p(1)) AND \(live) AND \(q("email")) = \(p(3))",
            invitesOfOrg: "SELECT \(inviteColumns) FROM \(invites) WHERE \(q("org_id")) = \(p(1)) AND \(live) ORDER BY \(q("created_at")) DESC, \(q("id"))",
            findInvite: "SELECT \(q("role")) FROM \(invites) WHERE \(q("id")) = \(p(1)) AND \(q("org_id")) = \(p(2))",
            deleteInvite: "DELETE FROM \(invites) WHERE \(q("id")) = \(p(1)) AND \(q("org_id")) = \(p(2))",
            discardInvite: "DELETE FROM \(invites) WHERE \(q("id")) = \(p(1))",
            deleteOrgInvites: "DELETE FROM \(invites) WHERE \(q("org_id")) = \(p(1))",
            inviteByToken: "SELECT \(inviteColumns) FROM \(invites) WHERE \(q("token_hash")) = \(p(1))")
    }

    private static func membership(_ conn: StoreConnection, _ s: Statements, _ org: String, _ user: String) throws -> (org: Org, role: Role)? {
        try conn.execute(s.membership, [.text(org), .text(user)]).rows.first.flatMap(orgAndRole)
    }

    private static func role(_ conn: StoreConnection, _ s: Statements, _ org: String, _ user: String) throws -> Role? {
        try member(conn, s, org, user)?.role
    }

    private static func member(_ conn: StoreConnection, _ s: Statements, _ org: String, _ user: String) throws -> Member? {
        try conn.execute(s.memberRow, [.text(org), .text(user)]).rows.first.flatMap(member)
    }

    private static func owners(_ conn: StoreConnection, _ s: Statements, _ org: String) throws -> Int64 {
        try conn.execute(s.countOwners, [.text(org)]).rows.first?.at(0).intValue ?? 0
    }

    private static func insertMember(_ tx: WriteTransaction, _ s: Statements, _ m: Member) throws {
        try ChangeLog.write(tx, s.insertMember, [.text(m.orgID), .text(m.userID), .text(m.role.rawValue), .int(m.joinedAt)], mapError: { $0 },
                            entity: memberEntity, rowID: m.rowID, kind: .insert, data: m.row, before: nil)
    }

    private static func deleteMember(_ tx: WriteTransaction, _ s: Statements, _ m: Member) throws {
        try ChangeLog.write(tx, s.deleteMemberRow, [.text(m.orgID), .text(m.userID)], mapError: { $0 },
                            entity: memberEntity, rowID: m.rowID, kind: .delete, data: nil, before: m.row)
    }

    /// Deletes `org`, its members and invites in `tx`; the sessions that acted in it act in
    /// none (`SessionStore.clearTenant`).
    private static func deleteOrg(_ tx: WriteTransaction, _ s: Statements, _ org: Org) throws {
        // Everything read first: a batching transaction queues its writes.
        let members = try tx.connection.execute(s.membersOfOrg, [.text(org.id)]).rows.compactMap(member)
        try SessionStore.clearTenant(tx, org.id, userID: nil)
        for m in members { try deleteMember(tx, s, m) }
        try tx.write(s.deleteOrgInvites, [.text(org.id)])
        try ChangeLog.write(tx, s.deleteOrgRow, [.text(org.id)], mapError: { $0 },
                            entity: orgEntity, rowID: org.id, kind: .delete, data: nil, before: org.row)
    }

    private static func orgAndRole(_ row: [SQLValue]) -> (org: Org, role: Role)? {
        guard let id = row.at(0).textValue, let name = row.at(1).textValue, let by = row.at(2).textValue,
              let at = row.at(3).intValue, let role = row.at(4).textValue.flatMap(Role.init(rawValue:)) else { return nil }
        return (Org(id: id, name: name, createdBy: by, createdAt: at), role)
    }

    private static func member(_ row: [SQLValue]) -> Member? {
        guard let org = row.at(0).textValue, let user = row.at(1).textValue, let role = row.at(2).textValue.flatMap(Role.init(rawValue:)),
              let joined = row.at(3).intValue else { return nil }
        return Member(orgID: org, userID: user, role: role, joinedAt: joined)
    }

    private static func invite(_ row: [SQLValue]) -> Invite? {
        guard let id = row.at(0).textValue, let org = row.at(1).textValue, let email = row.at(2).textValue,
              let role = row.at(3).textValue.flatMap(Role.init(rawValue:)), let by = row.at(4).textValue,
              let prefix = row.at(5).textValue, let created = row.at(6).intValue, let expires = row.at(7).intValue else { return nil }
        return Invite(id: id, orgID: org, email: email, role: role, invitedBy: by, tokenPrefix: prefix, createdAt: created, expiresAt: expires)
    }

    // MARK: ids and tokens

    /// `prefix` and 32 base64url characters from 24 CSPRNG bytes: not guessable, not enumerable.
    static func newID(_ prefix: String) -> String { prefix + base64url(random(24)) }

    /// An invite token: 32 CSPRNG bytes, 43 base64url characters.
    static func newToken() -> String { base64url(random(32)) }

    /// Whether `token` has `newToken`'s shape; nothing else reaches a query.
    static func isToken(_ token: String) -> Bool {
        token.utf8.count == 43 && token.utf8.allSatisfy { c in
            (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 45 || c == 95
        }
    }

    /// The stored form of a token: its SHA-256, hex.
    static func digest(_ token: String) -> String { RowID.hex(bytes: SHA256.hash(data: Array(token.utf8))) }

    private static func random(_ n: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    private static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
