import Foundation
import PylonCore
import PylonJSON

/// Checks write policies inside the write transaction, against rows read in that same
/// transaction, so a concurrent write cannot slip between check and change.
package struct WriteGuard: Sendable {
    package let policies: PolicyEngine
    package let auth: AuthContext

    package init(policies: PolicyEngine, auth: AuthContext) {
        self.policies = policies
        self.auth = auth
    }

    /// 403 IDENTITY_FIELD_READ_ONLY when a caller other than the admin writes the user
    /// entity's `email` or `emailVerified` (`PolicyEngine.identityFields`): an address is
    /// changed through `POST /api/auth/email/change`, which proves it.
    /// `fields` is only built for a non-admin write of the user entity (every other write
    /// passes here too, on the hot path).
    package func requireIdentityUntouched(_ entity: String, _ fields: @autoclosure () -> [(String, JSONValue)]) throws(HostError) {
        guard !auth.isAdmin, entity == policies.userEntity,
              let field = fields().first(where: { PolicyEngine.identityFields.contains($0.0) })?.0 else { return }
        throw HostError(status: 403, code: "IDENTITY_FIELD_READ_ONLY",
                        message: "\(entity).\(field) is kept by the host: change an email with POST /api/auth/email/change (a link to the new address confirms it); emailVerified is set when an address is proven")
    }

    package func require(_ op: PolicyEngine.Operation, _ entity: String, data: JSONValue?, existing: JSONValue?) throws(HostError) {
        guard policies.check(op, entity: entity, PolicyInput(auth: auth, data: data, existing: existing)) else {
            throw HostError.policyDenied(op.rawValue, entity)
        }
    }

    /// 403 when the caller may do `op` on no row of `entity` at all, before any row is
    /// looked up: then an absent and an existing row get the same answer.
    package func requireSomeRow(_ op: PolicyEngine.Operation, _ entity: String) throws(HostError) {
        if policies.deniesEveryRow(op, entity: entity, auth: auth) { throw HostError.policyDenied(op.rawValue, entity) }
    }

    /// `require` for changing the stored row `row` (`data` and `existing` are both the
    /// row). When the caller may not do it and may not read the row either, the answer is
    /// 404 with the body of an absent id: a 403 would tell them the row exists.
    package func requireOnStored(_ op: PolicyEngine.Operation, _ codec: RowCodec, id: String, _ row: JSONValue) throws(HostError) {
        let entity = codec.entity.name
        if policies.check(op, entity: entity, PolicyInput(auth: auth, data: row, existing: row)) { return }
        guard policies.check(.read, entity: entity, PolicyInput(auth: auth, data: row)) else {
            throw HostError.notFound("\(entity) with id \"\(id)\" not found")
        }
        throw HostError.policyDenied(op.rawValue, entity)
    }
}
