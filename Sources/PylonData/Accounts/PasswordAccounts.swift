import Foundation
import PylonCore
import PylonJSON

/// Email-and-password accounts (pylon-aux.md §1.12): users are rows of the manifest's user
/// entity (`auth.user.entity`, default `User`, which needs a string `email` field); each
/// one's Argon2id hash is in `_pylon_passwords`, never in the row, so no entity read,
/// change event, pull or export can carry it. Hashing runs on `PasswordWorkers`.
package final class PasswordAccounts: Sendable {
    let data: DataService
    let workers: PasswordWorkers

    package init(data: DataService, workers: PasswordWorkers) {
        self.data = data
        self.workers = workers
    }

    /// A new user with this email and password; returns its id. 409 `EMAIL_IN_USE` when a
    /// user with that email exists (with a password or not).
    package func register(_ email: EmailAddress, password: String, displayName: String?) async throws -> String {
        try Self.checkStrength(password)
        let codec = try userCodec()
        let hash = try await workers.run { try PasswordHasher.hash(password) }
        var row: [(String, JSONValue)] = [("email", .string(email.value))]
        let fields = Set(codec.entity.fields.map(\.name))
        if fields.contains("displayName") { row.append(("displayName", .string(displayName ?? email.value))) }
        if fields.contains("createdAt") { row.append(("createdAt", .string(ISOTime.now()))) }
        let id = RowID.generate(), newRow = row
        let guardian = WriteGuard(policies: data.policies, auth: .admin)
        let d = data.dialect
        return try await data.store.write { tx in
            if try Self.userID(tx.connection, codec, email, withPassword: false) != nil {
                throw HostError(status: 409, code: "EMAIL_IN_USE", message: "an account with this email exists; sign in instead")
            }
            do {
                _ = try DataService.insert(tx, codec, newRow, id: id, guardian)
            } catch let e as HostError where e.status == 400 {
                throw HostError(status: 500, code: "USER_CREATE_FAILED",
                                message: "the \(codec.entity.name) entity refused a new user (\(e.message)); give its other fields defaults or make them optional")
            }
            try tx.write("INSERT INTO \(d.quote("_pylon_passwords")) (\(d.quote("user_id")), \(d.quote("hash")), \(d.quote("updated_at"))) VALUES (\(d.placeholder(1)), \(d.placeholder(2)), \(d.placeholder(3)))",
                         [.text(id), .text(hash), .int(Int64(Date().timeIntervalSince1970))])
            return id
        }
    }

    /// The user whose email and password these are, or nil. Takes as long for an unknown
    /// email as for a wrong password (a decoy hash is checked).
    package func login(_ email: EmailAddress, password: String) async throws -> String? {
        guard password.utf8.count <= PasswordHasher.maxPasswordBytes else { return nil }
        let codec = try userCodec()
        let found = try await data.store.read { conn in try Self.userID(conn, codec, email, withPassword: true) }
        let phc = found?.hash ?? PasswordHasher.decoy
        let matches = try await workers.run { PasswordHasher.verify(password, phc: phc) }
        guard matches, let found else { return nil }
        return found.id
    }

    /// Replaces `userID`'s password when `current` is right; false when it is not (or the
    /// user has no password).
    package func change(userID: String, current: String, new: String) async throws -> Bool {
        try Self.checkStrength(new)
        let d = data.dialect
        let table = d.quote("_pylon_passwords"), user = d.quote("user_id"), hashColumn = d.quote("hash")
        let stored = try await data.store.read { conn in
            try conn.execute("SELECT \(hashColumn) FROM \(table) WHERE \(user) = \(d.placeholder(1))", [.text(userID)]).rows.first?.first?.textValue
        }
        let phc = stored ?? PasswordHasher.decoy
        guard try await workers.run({ PasswordHasher.verify(current, phc: phc) }), stored != nil else { return false }
        let hash = try await workers.run { try PasswordHasher.hash(new) }
        try await data.store.write { tx in
            try tx.write("UPDATE \(table) SET \(hashColumn) = \(d.placeholder(1)), \(d.quote("updated_at")) = \(d.placeholder(2)) WHERE \(user) = \(d.placeholder(3))",
                         [.text(hash), .int(Int64(Date().timeIntervalSince1970)), .text(userID)])
        }
        return true
    }

    /// Removes `userID`'s password (the account is being deleted).
    package func forget(userID: String) async throws {
        let d = data.dialect
        try await data.store.write { tx in
            try tx.write("DELETE FROM \(d.quote("_pylon_passwords")) WHERE \(d.quote("user_id")) = \(d.placeholder(1))", [.text(userID)])
        }
    }

    /// Pylon's minimum of 10 characters; at most `maxPasswordBytes`.
    package static func checkStrength(_ password: String) throws(HostError) {
        guard password.count >= PasswordHasher.minPasswordCharacters else {
            throw HostError.badRequest("WEAK_PASSWORD", "a password needs at least \(PasswordHasher.minPasswordCharacters) characters")
        }
        guard password.utf8.count <= PasswordHasher.maxPasswordBytes else {
            throw HostError.badRequest("WEAK_PASSWORD", "a password may have at most \(PasswordHasher.maxPasswordBytes) bytes")
        }
    }

    /// The user entity's codec; 501 when the manifest has none with a string `email` field.
    func userCodec() throws(HostError) -> RowCodec {
        let name = data.manifest.auth.userEntity
        guard let codec = data.codecs[name], let email = codec.entity.fields.first(where: { $0.name == "email" }),
              email.type == .string else {
            throw HostError(status: 501, code: "PASSWORDS_UNAVAILABLE",
                            message: "password sign-in needs an entity \"\(name)\" (auth.user.entity) with a string field \"email\" in the manifest")
        }
        return codec
    }

    /// The oldest user with `email` (and, with `withPassword`, only one that has a password)
    /// and its hash.
    static func userID(_ conn: StoreConnection, _ codec: RowCodec, _ email: EmailAddress,
                               withPassword: Bool) throws -> (id: String, hash: String?)? {
        let d = codec.dialect
        let u = d.quote(codec.entity.name), p = d.quote("_pylon_passwords")
        let join = withPassword ? "JOIN" : "LEFT JOIN"
        let sql = "SELECT u.\(d.quote("id")), p.\(d.quote("hash")) FROM \(u) u \(join) \(p) p ON p.\(d.quote("user_id")) = u.\(d.quote("id")) WHERE u.\(d.quote("email")) = \(d.placeholder(1)) ORDER BY u.\(d.quote("id")) LIMIT 1"
        guard let row = try conn.execute(sql, [.text(email.value)]).rows.first, let id = row.first?.textValue else { return nil }
        return (id, row.count > 1 ? row[1].textValue : nil)
    }
}
