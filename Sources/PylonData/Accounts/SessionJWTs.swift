import Foundation
import JWTKit
import PylonCore

/// Short-lived HS256 JWTs for a signed-in caller (pylon-aux.md §1.1 step 3 and §1.3), for
/// services that check a token without asking the host: `POST /api/auth/jwt` mints one
/// (`{sub, iat, exp, iss, tenant_id, roles}`), and a Bearer JWT is accepted back as that
/// user. They cannot be revoked before they expire (`PYLON_JWT_LIFETIME_SECS`, default an
/// hour), and never carry admin rights.
package final class SessionJWTs: Sendable {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var iat: IssuedAtClaim
        var exp: ExpirationClaim
        var iss: IssuerClaim
        var tenant_id: String?
        var roles: [String]
        /// Set by this host when it mints a token for a session acting in an organisation:
        /// the host's own memberships decide, so the organisation counts only while the user
        /// is still a member (`verify`'s `isMember`). A JWT from another issuer sharing
        /// the secret has no such claim, and its `tenant_id` is trusted, as in Pylon.
        var pylon_member: Bool?

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
        }
    }

    private let keys: Task<JWTKeyCollection, Never>
    /// Required to accept JWTs (Pylon: `JWT_MISCONFIGURED` without it); minting uses "pylon".
    private let issuer: String?
    private let lifetime: Int64

    package init(secret: String, issuer: String?, lifetime: Int64) {
        self.issuer = issuer
        self.lifetime = lifetime
        keys = Task {
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            return keys
        }
    }

    /// A token for `auth` (a user, or the admin as `__admin__` without admin rights).
    package func mint(_ auth: AuthContext) async throws -> (token: String, expiresAt: Int64) {
        guard let user = auth.userID else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in first")
        }
        // Whole seconds: NumericDate is integer seconds to most verifiers (RFC 7519 §2
        // allows fractions, but Rust's jsonwebtoken, among others, rejects them).
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let expires = now.addingTimeInterval(TimeInterval(lifetime))
        let claims = Claims(sub: SubjectClaim(value: user), iat: IssuedAtClaim(value: now), exp: ExpirationClaim(value: expires),
                            iss: IssuerClaim(value: issuer ?? "pylon"), tenant_id: auth.tenantID, roles: auth.roles,
                            pylon_member: auth.tenantID == nil ? nil : true)
        return (try await keys.value.sign(claims), Int64(expires.timeIntervalSince1970))
    }

    /// The caller a JWT names and when the token expires (unix seconds): signed with the
    /// secret (HS256 only), not expired, from the configured issuer. 401 `INVALID_JWT`
    /// otherwise, or `JWT_MISCONFIGURED` without an issuer. A token this host minted in an
    /// organisation acts in it only while `isMember(user, org)` says the user still belongs
    /// (a removed member's token acts in none, as their session does).
    package func verify(_ token: String, isMember: (String, String) async throws -> Bool) async throws -> (auth: AuthContext, expiresAt: Int64) {
        guard let issuer else {
            throw HostError(status: 401, code: "JWT_MISCONFIGURED", message: "JWTs are accepted only with PYLON_JWT_ISSUER set on the host")
        }
        let claims: Claims
        do {
            claims = try await keys.value.verify(token, as: Claims.self)
        } catch {
            throw Self.invalid
        }
        guard claims.iss.value == issuer, !claims.sub.value.isEmpty else { throw Self.invalid }
        // A guest's JWT stays a guest's, as its session is (`guest_` user ids).
        var tenant = claims.tenant_id
        if let org = tenant, claims.pylon_member == true, try await !isMember(claims.sub.value, org) { tenant = nil }
        let auth = AuthContext(userID: claims.sub.value, isAdmin: false, isGuest: claims.sub.value.hasPrefix("guest_"),
                               roles: claims.roles.filter { $0 != "admin" }, tenantID: tenant)
        // Rounded up: a stream read as this token never ends before the token stops working.
        return (auth, Int64(claims.exp.value.timeIntervalSince1970.rounded(.up)))
    }

    /// Three non-empty dot-separated parts (Pylon's `looks_like_jwt`).
    package static func looksLikeJWT(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts.allSatisfy { !$0.isEmpty }
    }

    private static let invalid = HostError(status: 401, code: "INVALID_JWT", message: "Bearer token is malformed, expired, or revoked")
}
