import Crypto
import Foundation
import PylonCore
import PylonJSON

/// What the auth.oauth plugin says about the person who signed in at a provider.
package struct OAuthIdentity: Sendable {
    package var provider: String
    package var subject: String
    package var email: EmailAddress?
    package var emailVerified: Bool
    package var name: String?
    /// {"access_token", "refresh_token"?, "expires_at"?, "scope"?}
    package var tokens: JSONValue

    /// The plugin's identity JSON; an unusable one is a 502 (the provider's fault).
    package init(_ json: JSONValue) throws(HostError) {
        guard let provider = json["provider"]?.stringValue, let subject = json["subject"]?.stringValue, !subject.isEmpty else {
            throw HostError(status: 502, code: "OAUTH_TOKEN_EXCHANGE_FAILED", message: "the provider's answer names no user")
        }
        self.provider = provider
        self.subject = subject
        email = json["email"]?.stringValue.flatMap { try? EmailAddress($0) }
        emailVerified = email != nil && json["email_verified"]?.boolValue == true
        name = json["name"]?.stringValue.flatMap { $0.isEmpty ? nil : String($0.prefix(200)) }
        tokens = json["tokens"] ?? .object([])
    }

    /// A --dev identity (`POST /api/auth/callback/:p` with an email and no code).
    package init(devProvider provider: String, email: EmailAddress, name: String?) {
        self.provider = provider
        subject = "dev:" + email.value
        self.email = email
        emailVerified = true
        self.name = name
        tokens = .object([])
    }
}

/// One sign-in flow in flight, as `begin` stored it.
package struct OAuthFlow: Sendable {
    package var provider: String
    package var callbackURL: String
    package var errorCallbackURL: String
    package var verifier: String
    package var nonce: String
    /// The callback URL the provider was given (the exchange must repeat it).
    package var redirectURI: String

    package init(provider: String, callbackURL: String, errorCallbackURL: String, verifier: String, nonce: String, redirectURI: String) {
        self.redirectURI = redirectURI
        self.provider = provider
        self.callbackURL = callbackURL
        self.errorCallbackURL = errorCallbackURL
        self.verifier = verifier
        self.nonce = nonce
    }
}

/// OAuth state and account links in the app's store (pylon-aux.md §1.7–1.8, with Pylon's
/// gaps closed): a flow's state is kept as a hash, single use, for ten minutes, bound to
/// the browser that began it; provider tokens and PKCE verifiers are encrypted at rest; a
/// provider's email is linked to an existing user only when the provider says it is
/// verified; a user that cannot be created fails the sign-in.
package final class OAuthAccounts: Sendable {
    let data: DataService
    let cipher: TokenCipher
    package static let stateLifetimeSeconds: Int64 = 600
    static let state = SystemTables.oauthState.name
    static let links = SystemTables.accounts.name

    package init(data: DataService, cipher: TokenCipher) {
        self.data = data
        self.cipher = cipher
    }

    static func hash(_ s: String) -> String { RowID.hex(bytes: SHA256.hash(data: Array(s.utf8))) }
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }
    func sql(_ s: String) -> String { JobStore(dialect: data.dialect).sql(s) }

    /// Stores a new flow under `state`, bound to `browser` (the binding cookie's value);
    /// expired flows are swept on the way.
    package func begin(_ flow: OAuthFlow, state: String, browser: String) async throws {
        let now = Self.now(), sealed = cipher.seal(flow.verifier)
        let insert = sql("INSERT INTO \(Self.state) (state_hash, provider, callback_url, error_callback_url, verifier, nonce, browser_hash, redirect_uri, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        let sweep = sql("DELETE FROM \(Self.state) WHERE expires_at < ?")
        try await data.store.write { tx in
            try tx.connection.execute(sweep, [.int(now)], wantRows: false)
            try tx.connection.execute(insert, [.text(Self.hash(state)), .text(flow.provider), .text(flow.callbackURL), .text(flow.errorCallbackURL),
                                               .text(sealed), .text(flow.nonce), .text(Self.hash(browser)), .text(flow.redirectURI),
                                               .int(now + Self.stateLifetimeSeconds)],
                                      wantRows: false)
        }
    }

    /// Consumes the flow stored under `state`: nil when there is none, it expired, it was
    /// for another provider or `browser` is not the one that began it. Used up either way.
    package func take(state: String, provider: String, browser: String?) async throws -> OAuthFlow? {
        let key = Self.hash(state)
        let select = sql("SELECT provider, callback_url, error_callback_url, verifier, nonce, browser_hash, expires_at, redirect_uri FROM \(Self.state) WHERE state_hash = ?")
        let delete = sql("DELETE FROM \(Self.state) WHERE state_hash = ?")
        let row: [SQLValue]? = try await data.store.write { tx in
            guard let r = try tx.connection.execute(select, [.text(key)]).rows.first else { return nil }
            try tx.connection.execute(delete, [.text(key)], wantRows: false)
            return r
        }
        guard let row, row[0].textValue == provider, case let .int(expires) = row[6], expires >= Self.now(),
              let browser, ConstantTime.equal(Self.hash(browser), row[5].textValue ?? ""),
              let verifier = cipher.open(row[3].textValue ?? "") else { return nil }
        return OAuthFlow(provider: provider, callbackURL: row[1].textValue ?? "", errorCallbackURL: row[2].textValue ?? "",
                         verifier: verifier, nonce: row[4].textValue ?? "", redirectURI: row[7].textValue ?? "")
    }

    /// The user linked to the provider's `subject`, or nil.
    package func linkedUser(provider: String, subject: String) async throws -> String? {
        let select = sql("SELECT user_id FROM \(Self.links) WHERE provider_id = ? AND account_id = ?")
        return try await data.store.read { conn in try conn.execute(select, [.text(provider), .text(subject)]).rows.first?.first?.textValue }
    }

    /// The user this identity signs in: the one linked to its subject; else (email
    /// verified by the provider) the user with that email, now linked; else a new user.
    /// 409 OAUTH_EMAIL_NOT_VERIFIED when a user has the email but the provider does not
    /// vouch for it.
    package func signIn(_ identity: OAuthIdentity) async throws -> String {
        let codec = try userCodec()
        let hasEmail = codec.entity.fields.contains { $0.name == "email" }
        let guardian = WriteGuard(policies: data.policies, auth: .admin)
        let d = data.dialect, userTable = d.quote(codec.entity.name)
        let findLink = sql("SELECT id, user_id FROM \(Self.links) WHERE provider_id = ? AND account_id = ?")
        let dropLink = sql("DELETE FROM \(Self.links) WHERE id = ?")
        let userByID = "SELECT \(d.quote("id")) FROM \(userTable) WHERE \(d.quote("id")) = \(d.placeholder(1))"
        let userByEmail = "SELECT \(d.quote("id")) FROM \(userTable) WHERE \(d.quote("email")) = \(d.placeholder(1)) ORDER BY \(d.quote("id")) LIMIT 1"
        return try await data.store.write { [self] tx in
            let conn = tx.connection
            if let link = try conn.execute(findLink, [.text(identity.provider), .text(identity.subject)]).rows.first,
               let linkID = link[0].textValue, let userID = link[1].textValue {
                if try !conn.execute(userByID, [.text(userID)]).rows.isEmpty {
                    try saveTokens(tx, linkID: linkID, identity.tokens, email: identity.email)
                    return userID
                }
                try conn.execute(dropLink, [.text(linkID)], wantRows: false)  // its user was deleted
            }
            var userID: String?
            if hasEmail, let email = identity.email, let existing = try conn.execute(userByEmail, [.text(email.value)]).rows.first?.first?.textValue {
                guard identity.emailVerified else {
                    throw HostError(status: 409, code: "OAUTH_EMAIL_NOT_VERIFIED",
                                    message: "an account with this email exists, and \(identity.provider) does not say the email is verified: sign in to that account another way, or verify the email at \(identity.provider)")
                }
                userID = existing
                if let stamp = Self.verifiedStamp(codec) { _ = try DataService.update(tx, codec, id: existing, [stamp], guardian) }
            }
            if userID == nil {
                userID = try createUser(tx, codec, identity, guardian)
            }
            try link(tx, userID: userID!, identity)
            return userID!
        }
    }

    /// The caller's link to `provider` and its refresh token (decrypted), or nil.
    package func refreshToken(userID: String, provider: String) async throws -> (linkID: String, token: String?)? {
        let select = sql("SELECT id, refresh_token FROM \(Self.links) WHERE user_id = ? AND provider_id = ? ORDER BY created_at LIMIT 1")
        guard let row = try await data.store.read({ conn in try conn.execute(select, [.text(userID), .text(provider)]).rows.first }),
              let id = row[0].textValue else { return nil }
        return (id, row[1].textValue.flatMap { cipher.open($0) })
    }

    /// Stores refreshed tokens (a refresh token the provider did not resend is kept).
    package func storeTokens(linkID: String, _ tokens: JSONValue) async throws {
        try await data.store.write { [self] tx in try saveTokens(tx, linkID: linkID, tokens, email: nil) }
    }

    /// Removes every link of `userID` (the account is being deleted); how many there were.
    package func forget(userID: String) async throws -> Int {
        let select = sql("SELECT COUNT(*) FROM \(Self.links) WHERE user_id = ?"), delete = sql("DELETE FROM \(Self.links) WHERE user_id = ?")
        return try await data.store.write { tx in
            let n = try tx.connection.execute(select, [.text(userID)]).rows.first?.first?.intValue ?? 0
            try tx.connection.execute(delete, [.text(userID)], wantRows: false)
            return Int(n)
        }
    }

    // MARK: pieces

    private func createUser(_ tx: WriteTransaction, _ codec: RowCodec, _ identity: OAuthIdentity, _ guardian: WriteGuard) throws -> String {
        let fields = Dictionary(codec.entity.fields.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var row: [(String, JSONValue)] = []
        if fields["email"] != nil, let email = identity.email { row.append(("email", .string(email.value))) }
        if fields["displayName"] != nil { row.append(("displayName", .string(identity.name ?? identity.email?.value ?? identity.provider + " user"))) }
        if fields["name"] != nil, let name = identity.name { row.append(("name", .string(name))) }
        if identity.emailVerified, let stamp = Self.verifiedStamp(codec) { row.append(stamp) }
        if fields["createdAt"] != nil { row.append(("createdAt", .string(ISOTime.now()))) }
        let id = RowID.generate()
        do {
            _ = try DataService.insert(tx, codec, row, id: id, guardian)
        } catch let e as HostError where e.status == 400 || e.status == 409 {
            throw HostError(status: 500, code: "USER_CREATE_FAILED",
                            message: "the \(codec.entity.name) entity refused a new user from \(identity.provider) (\(e.message)); give its other fields defaults or make them optional")
        }
        return id
    }

    private func link(_ tx: WriteTransaction, userID: String, _ identity: OAuthIdentity) throws {
        let now = Self.now(), id = "acct_" + RowID.generate()
        try tx.connection.execute(sql("INSERT INTO \(Self.links) (id, user_id, provider_id, account_id, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                                  [.text(id), .text(userID), .text(identity.provider), .text(identity.subject),
                                   identity.email.map { .text($0.value) } ?? .null, .int(now), .int(now)], wantRows: false)
        try saveTokens(tx, linkID: id, identity.tokens, email: nil)
    }

    private func saveTokens(_ tx: WriteTransaction, linkID: String, _ t: JSONValue, email: EmailAddress?) throws {
        var sets = ["updated_at = ?"], params: [SQLValue] = [.int(Self.now())]
        if let a = t["access_token"]?.stringValue { sets.append("access_token = ?"); params.append(.text(cipher.seal(a))) }
        if let r = t["refresh_token"]?.stringValue { sets.append("refresh_token = ?"); params.append(.text(cipher.seal(r))) }
        if let e = t["expires_at"]?.intValue { sets.append("access_token_expires_at = ?"); params.append(.int(e)) }
        if let s = t["scope"]?.stringValue { sets.append("scope = ?"); params.append(.text(s)) }
        if let email { sets.append("email = ?"); params.append(.text(email.value)) }
        params.append(.text(linkID))
        try tx.connection.execute(sql("UPDATE \(Self.links) SET \(sets.joined(separator: ", ")) WHERE id = ?"), params, wantRows: false)
    }

    /// `emailVerified` set as its type wants (true, or the time), when the entity has it.
    static func verifiedStamp(_ codec: RowCodec) -> (String, JSONValue)? {
        guard let f = codec.entity.fields.first(where: { $0.name == "emailVerified" }) else { return nil }
        return ("emailVerified", f.type == .bool ? .bool(true) : .string(ISOTime.now()))
    }

    private func userCodec() throws(HostError) -> RowCodec {
        let name = data.manifest.auth.userEntity
        guard let codec = data.codecs[name] else {
            throw HostError(status: 501, code: "OAUTH_UNAVAILABLE", message: "OAuth sign-in needs the user entity \"\(name)\" (auth.user.entity) in the manifest")
        }
        return codec
    }
}
