import Foundation
import PylonCore
import PylonJSON

/// Accounts reached through their email (magic codes and links, email verification,
/// password reset, pylon-aux.md §1.5): a user proves the address by a secret sent to it, so
/// the host may create the user, stamp `emailVerified`, or set a new password.
extension PasswordAccounts {
    /// The user with `email`, created on first sign-in as Pylon does (`{email, displayName:
    /// email, emailVerified, createdAt}`, each where the entity has the field); an existing
    /// user's `emailVerified` is stamped when empty. A user the entity refuses fails the
    /// sign-in (500 USER_CREATE_FAILED) — never a session for a user that does not exist.
    package func signInByEmail(_ email: EmailAddress) async throws -> String {
        let codec = try userCodec()
        let fields = Set(codec.entity.fields.map(\.name))
        let guardian = WriteGuard(policies: data.policies, auth: .admin)
        let id = RowID.generate()
        return try await data.store.write { tx in
            if let found = try Self.userID(tx.connection, codec, email, withPassword: false) {
                _ = try Self.stampVerified(tx, codec, id: found.id, guardian)
                return found.id
            }
            var row: [(String, JSONValue)] = [("email", .string(email.value))]
            if fields.contains("displayName") { row.append(("displayName", .string(email.value))) }
            if fields.contains("createdAt") { row.append(("createdAt", .string(ISOTime.now()))) }
            if let v = Self.verifiedValue(codec) { row.append(("emailVerified", v)) }
            do {
                _ = try DataService.insert(tx, codec, row, id: id, guardian)
            } catch let e as HostError where e.status == 400 {
                throw HostError(status: 500, code: "USER_CREATE_FAILED",
                                message: "the \(codec.entity.name) entity refused a new user (\(e.message)); give its other fields defaults or make them optional")
            }
            return id
        }
    }

    /// The user with `email`, or nil.
    package func user(withEmail email: EmailAddress) async throws -> String? {
        let codec = try userCodec()
        return try await data.store.read { conn in try Self.userID(conn, codec, email, withPassword: false)?.id }
    }

    /// Whether `userID`'s address was ever proven: its `emailVerified` is set. False
    /// without the field (the host cannot tell) and for a missing user.
    package func emailProven(userID: String) async throws -> Bool {
        let codec = try userCodec()
        guard codec.entity.fields.contains(where: { $0.name == "emailVerified" }),
              let value = try await data.get(codec.entity.name, id: userID)?["emailVerified"] else { return false }
        return VerifiedEmail.proven(value)
    }

    /// The email on `userID`'s row, or nil (no such user, or no valid address on it).
    package func email(ofUser userID: String) async throws -> EmailAddress? {
        let codec = try userCodec()
        guard let row = try await data.get(codec.entity.name, id: userID), let text = row["email"]?.stringValue else { return nil }
        return try? EmailAddress(text)
    }

    /// Stamps `emailVerified` on `userID`'s row when its email is still `email`; returns
    /// the field's value (nil: the row's email changed since the code was sent, or no user).
    package func markEmailVerified(userID: String, email: EmailAddress) async throws -> JSONValue? {
        let codec = try userCodec()
        let guardian = WriteGuard(policies: data.policies, auth: .admin)
        return try await data.store.write { tx in
            guard let row = try DataService.fetch(tx, codec, id: userID),
                  let current = row["email"]?.stringValue, (try? EmailAddress(current)) == email else { return nil }
            return try Self.stampVerified(tx, codec, id: userID, guardian) ?? .null
        }
    }

    /// Makes `email` the email of `userID` (they proved the new address by a link sent to it)
    /// and stamps it verified, as one change of the row. 409 EMAIL_IN_USE when another user
    /// has the address by now; 404 USER_NOT_FOUND when the user is gone.
    package func changeEmail(userID: String, to email: EmailAddress) async throws {
        let codec = try userCodec()
        let guardian = WriteGuard(policies: data.policies, auth: .admin)
        try await data.store.write { tx in
            if let other = try Self.userID(tx.connection, codec, email, withPassword: false), other.id != userID {
                throw HostError(status: 409, code: "EMAIL_IN_USE", message: "another account has this email now; ask for the change again with another address")
            }
            guard try DataService.fetch(tx, codec, id: userID) != nil else {
                throw HostError(status: 404, code: "USER_NOT_FOUND", message: "the account this change was for no longer exists")
            }
            var changes: [(String, JSONValue)] = [("email", .string(email.value))]
            if let v = Self.verifiedValue(codec) { changes.append(("emailVerified", v)) }
            _ = try DataService.update(tx, codec, id: userID, changes, guardian)
        }
    }

    /// Sets `userID`'s password (a reset: the user proved the address, not the old password).
    package func setPassword(userID: String, new: String) async throws {
        try Self.checkStrength(new)
        let hash = try await workers.run { try PasswordHasher.hash(new) }
        let d = data.dialect
        let sql = "INSERT INTO \(d.quote("_pylon_passwords")) (\(d.quote("user_id")), \(d.quote("hash")), \(d.quote("updated_at"))) "
            + "VALUES (\(d.placeholder(1)), \(d.placeholder(2)), \(d.placeholder(3))) ON CONFLICT (\(d.quote("user_id"))) "
            + "DO UPDATE SET \(d.quote("hash")) = excluded.\(d.quote("hash")), \(d.quote("updated_at")) = excluded.\(d.quote("updated_at"))"
        try await data.store.write { tx in
            try tx.write(sql, [.text(userID), .text(hash), .int(Int64(Date().timeIntervalSince1970))])
        }
    }

    /// The row's `emailVerified` after stamping it when empty; nil when the entity has no
    /// such field.
    private static func stampVerified(_ tx: WriteTransaction, _ codec: RowCodec, id: String, _ guardian: WriteGuard) throws -> JSONValue? {
        guard let value = verifiedValue(codec), let row = try DataService.fetch(tx, codec, id: id) else { return nil }
        if let existing = row["emailVerified"], VerifiedEmail.proven(existing) { return existing }
        _ = try DataService.update(tx, codec, id: id, [("emailVerified", value)], guardian)
        return value
    }

    /// What `emailVerified` is set to, by the field's type: now (ISO 8601, as Pylon after its
    /// fix; epoch milliseconds for a number), or true; nil without the field.
    private static func verifiedValue(_ codec: RowCodec) -> JSONValue? {
        guard let f = codec.entity.fields.first(where: { $0.name == "emailVerified" }) else { return nil }
        switch f.type {
        case .bool: return .bool(true)
        case .int, .float: return .int(Int64(Date().timeIntervalSince1970 * 1000))
        default: return .string(ISOTime.now())
        }
    }
}
