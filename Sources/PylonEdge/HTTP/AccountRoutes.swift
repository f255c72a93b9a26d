import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// `DELETE /api/auth/account` (pylon-aux.md §1.3): a signed-in user deletes themselves —
/// every session (and so every stream) ends, every API key, the password and their
/// organisation memberships go, and their
/// row of the user entity is deleted (a change event, as any delete). Only with a session:
/// an API key, the admin token and anonymous callers cannot. Steps run in this order so
/// that a failure part way leaves a user who can no longer sign in, and repeating finishes.
extension RouteContext {
    func addAccountRoutes(_ router: Router<PylonRequestContext>) {
        router.delete("/api/auth/account") { req, _ in
            let user = try await sessionUser(req)
            let ended = try await endAccount(user)
            let entity = data.manifest.auth.userEntity
            if data.codecs[entity] != nil, try await data.get(entity, id: user) != nil {
                _ = try await data.delete(entity, id: user, auth: .admin)
            }
            let answer = HTTPSupport.json(.object([("deleted", true), ("revoked_sessions", .int(Int64(ended.sessions))),
                                                   ("revoked_api_keys", .int(Int64(ended.apiKeys))), ("unlinked_accounts", .int(Int64(ended.links))),
                                                   ("deleted_files", .int(Int64(ended.files))), ("left_orgs", .int(Int64(ended.memberships)))]))
            return withoutSessionCookie(req, answer)
        }
    }

    /// What `endAccount` ended, by kind.
    struct EndedAccount {
        var sessions = 0, apiKeys = 0, links = 0, memberships = 0, files = 0
    }

    /// Ends everything that lets `user` act or sign in — for an account deleted by its user
    /// and for an admin's purge alike: sessions (and their streams), API keys, pending codes
    /// and links, the password, provider links, organisation memberships (an organisation
    /// the user alone owned passes to its next admin or member, or goes when nobody is
    /// left) and uploads. Sessions first, so a failure part way leaves a user who can no
    /// longer act, and repeating finishes the rest.
    func endAccount(_ user: String) async throws -> EndedAccount {
        var ended = EndedAccount()
        ended.sessions = try await sessions.revokeAll(userID: user)
        ended.apiKeys = try await apiKeys?.revokeAll(userID: user) ?? 0
        if let codes { try await codes.forget(email: (try? await passwords.email(ofUser: user))?.value, userID: user) }
        try await passwords.forget(userID: user)
        ended.links = try await oauth?.accounts.forget(userID: user) ?? 0
        ended.memberships = try await orgs.forget(userID: user)
        if let files { ended.files = try await purgeFiles(of: user, files) }
        return ended
    }
}
