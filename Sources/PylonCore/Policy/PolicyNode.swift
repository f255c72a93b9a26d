import PylonJSON

/// Where a path points. Unknown roots and unknown `auth` members read as `null` (as in Pylon).
enum PolicyPath: Sendable, Equatable {
    case authUserID, authIsAdmin, authTenantID, authEmail, authRoles, authIsGuest
    /// The API key the caller signed in with (null otherwise), and its scopes as a list.
    case authApiKeyID, authApiKeyScopes
    case data([String])
    case existing([String])
    case input([String])
    case unknown

    init(_ word: String) {
        let parts = word.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let rest = Array(parts.dropFirst())
        switch parts[0] {
        case "data": self = .data(rest)
        case "existing": self = .existing(rest)
        case "input": self = .input(rest)
        case "auth" where rest.count == 1:
            switch rest[0] {
            case "userId", "user_id": self = .authUserID
            case "isAdmin", "is_admin": self = .authIsAdmin
            case "tenantId", "tenant_id": self = .authTenantID
            case "email": self = .authEmail
            case "roles": self = .authRoles
            case "isGuest", "is_guest": self = .authIsGuest
            case "apiKeyId", "api_key_id": self = .authApiKeyID
            case "apiKeyScopes", "api_key_scopes": self = .authApiKeyScopes
            default: self = .unknown
            }
        default: self = .unknown
        }
    }
}

enum PolicyComparison: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case contains = "in"
}

indirect enum PolicyNode: Sendable {
    case literal(JSONValue)
    /// An array literal with at least one non-constant element.
    case list([PolicyNode])
    case path(PolicyPath)
    case hasRole(String)
    case hasAnyRole([String])
    case not(PolicyNode)
    case and([PolicyNode])
    case or([PolicyNode])
    case compare(PolicyComparison, PolicyNode, PolicyNode)

    var readsRow: Bool {
        switch self {
        case .literal, .hasRole, .hasAnyRole: return false
        case let .path(p):
            switch p {
            case .data, .existing: return true
            default: return false
            }
        case let .list(items), let .and(items), let .or(items): return items.contains { $0.readsRow }
        case let .not(x): return x.readsRow
        case let .compare(_, l, r): return l.readsRow || r.readsRow
        }
    }
}
