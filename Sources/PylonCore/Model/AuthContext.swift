import PylonJSON

/// Who is calling (pylon-core.md §0.5). Built by the host from the request's token; never
/// decoded from client input.
public struct AuthContext: Sendable, Hashable {
    public var userID: String?
    public var isAdmin: Bool
    public var isGuest: Bool
    public var roles: [String]
    public var tenantID: String?
    /// Set when the caller signed in with an API key (`pk.…`): its id and its scopes, opaque
    /// strings the app's policies and functions interpret.
    public var apiKeyID: String?
    public var apiKeyScopes: String?
    /// `auth.email`: the user's address only while it is verified (`emailVerified` set on
    /// the user row), lowercased as the host stores it; nil for anonymous callers, guests,
    /// the admin token, JWTs and users without a verified address. An unverified address
    /// proves nothing (anyone can register with someone else's), so it never reaches a
    /// policy. Filled where the session or API key is looked up (`SessionStore`,
    /// `ApiKeys`), from the same read.
    public var email: String?

    package init(userID: String?, isAdmin: Bool, isGuest: Bool, roles: [String], tenantID: String?,
                 apiKeyID: String? = nil, apiKeyScopes: String? = nil, email: String? = nil) {
        self.userID = userID
        self.isAdmin = isAdmin
        self.isGuest = isGuest
        self.roles = roles
        self.tenantID = tenantID
        self.apiKeyID = apiKeyID
        self.apiKeyScopes = apiKeyScopes
        self.email = email
    }

    /// An API key's scopes as a list: the stored text split at spaces and commas.
    public static func scopeList(_ scopes: String?) -> [String] {
        (scopes ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
    }

    public static let anonymous = AuthContext(userID: nil, isAdmin: false, isGuest: false, roles: [], tenantID: nil)
    public static let admin = AuthContext(userID: "__admin__", isAdmin: true, isGuest: false, roles: ["admin"], tenantID: nil)

    /// `GET /api/auth/me` body: optional keys only when set.
    public var json: JSONValue {
        var o: [(String, JSONValue)] = [
            ("user_id", userID.map { .string($0) } ?? .null),
            ("is_admin", .bool(isAdmin)),
        ]
        if isGuest { o.append(("is_guest", true)) }
        o.append(("roles", .array(roles.map { .string($0) })))
        if let tenantID { o.append(("tenant_id", .string(tenantID))) }
        if let apiKeyID { o.append(("api_key_id", .string(apiKeyID))) }
        if let apiKeyScopes { o.append(("api_key_scopes", .string(apiKeyScopes))) }
        return .object(o)
    }
}
