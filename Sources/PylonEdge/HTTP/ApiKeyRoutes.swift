import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// A signed-in user's API keys (`/api/auth/api-keys`, pylon-aux.md §1.9): make one (the token
/// is shown once), list them, revoke one. Only with a session: the admin token and API keys
/// themselves get 403. Without a pepper (outside --dev) every route answers 501.
extension RouteContext {
    func addApiKeyRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/api-keys") { req, _ in
            let keys = try requireApiKeys()
            let user = try await sessionUser(req)
            // A guest is a throwaway identity; a key that outlives it would be a credential
            // for an account nobody can sign in to or clean up.
            guard try await !auth(req).isGuest else {
                throw HostError(status: 403, code: "GUEST_FORBIDDEN", message: "a guest session cannot create API keys; sign up (upgrade the guest) first")
            }
            let b = try await body(req, empty: .object([]))
            guard case .object = b else {
                throw HostError.badRequest("INVALID_BODY", "the body must be a JSON object, e.g. {\"name\": \"ci\", \"expires_at\": 1893456000}")
            }
            let name = try Self.optionalText(b, "name", max: 100) ?? "untitled"
            let scopes = try Self.optionalText(b, "scopes", max: 1000)
            var expiresAt: Int64?
            if let e = b["expires_at"], !e.isNull {
                guard let t = e.intValue, t > Int64(Date().timeIntervalSince1970) else {
                    throw HostError.badRequest("INVALID_DATA", "expires_at must be a unix time in the future (seconds)")
                }
                expiresAt = t
            }
            let (token, key) = try await keys.create(userID: user, name: name, scopes: scopes, expiresAt: expiresAt)
            guard case let .object(fields) = key.json else { return HTTPSupport.json(key.json) }
            return HTTPSupport.json(.object([("key", .string(token))] + fields.filter { $0.0 != "last_used_at" }))
        }
        router.get("/api/auth/api-keys") { req, _ in
            let keys = try requireApiKeys()
            let user = try await sessionUser(req)
            return HTTPSupport.json(.array(try await keys.list(userID: user).map(\.json)))
        }
        router.delete("/api/auth/api-keys/:id") { req, ctx in
            let keys = try requireApiKeys()
            let user = try await sessionUser(req)
            let id = ctx.parameters.get("id") ?? ""
            // Another user's key is answered exactly as a missing one.
            guard try await keys.revoke(id: id, userID: user) else {
                throw HostError(status: 404, code: "NOT_FOUND", message: "you have no API key with this id")
            }
            return HTTPSupport.json(.object([("revoked", true)]))
        }
    }

    private func requireApiKeys() throws(HostError) -> ApiKeys {
        guard let apiKeys else {
            throw HostError(status: 501, code: "API_KEYS_NOT_CONFIGURED",
                            message: "API keys need PYLON_API_KEY_PEPPER (a long random secret) on the host")
        }
        return apiKeys
    }

    /// An optional string member of at most `max` characters.
    private static func optionalText(_ body: JSONValue, _ name: String, max: Int) throws(HostError) -> String? {
        guard let v = body[name], !v.isNull else { return nil }
        guard let s = v.stringValue, s.count <= max else {
            throw HostError.badRequest("INVALID_DATA", "\(name) must be a string of at most \(max) characters")
        }
        return s
    }
}
