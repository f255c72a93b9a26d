import Foundation
import JWTKit

/// Sign in with Apple's client secret: not a fixed string but a JWT the app signs (ES256)
/// with the private key from its Apple developer account — header `kid` the key's id; claims
/// `iss` the team id, `sub` the client (Services) id, `aud` https://appleid.apple.com, `iat`
/// and `exp` (Apple accepts up to six months). Minted fresh for each token request, valid five
/// minutes, from PYLON_OAUTH_APPLE_TEAM_ID, _KEY_ID and _PRIVATE_KEY (the .p8 file's PEM text;
/// `\n` escapes are read as line breaks, as an environment variable often carries them).
/// The key is checked when the plugin starts, so a bad one is a startup error, not a failed
/// sign-in.
struct AppleClientSecret: Sendable {
    struct Claims: JWTPayload {
        var iss: IssuerClaim
        var sub: SubjectClaim
        var aud: AudienceClaim
        var iat: IssuedAtClaim
        var exp: ExpirationClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let audience = "https://appleid.apple.com"
    static let lifetime: TimeInterval = 300

    let teamID: String
    let keyID: String
    let clientID: String
    private let key: ES256PrivateKey

    init(teamID: String, keyID: String, privateKey pem: String, clientID: String) throws(ProviderRegistry.Problem) {
        do {
            key = try ES256PrivateKey(pem: pem.replacingOccurrences(of: "\\n", with: "\n"))
        } catch {
            throw ProviderRegistry.Problem(message: "apple: PYLON_OAUTH_APPLE_PRIVATE_KEY must be the EC P-256 private key from Apple (the .p8 file's PEM text)")
        }
        self.teamID = teamID
        self.keyID = keyID
        self.clientID = clientID
    }

    /// A client secret valid from `now` for `lifetime`.
    func mint(now: Date = Date()) async throws -> String {
        let keys = JWTKeyCollection()
        let kid = JWKIdentifier(string: keyID)
        await keys.add(ecdsa: key, kid: kid)
        let claims = Claims(iss: IssuerClaim(value: teamID), sub: SubjectClaim(value: clientID), aud: AudienceClaim(value: [Self.audience]),
                            iat: IssuedAtClaim(value: now), exp: ExpirationClaim(value: now.addingTimeInterval(Self.lifetime)))
        return try await keys.sign(claims, kid: kid)
    }
}
