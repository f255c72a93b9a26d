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
            let sessionsEnded = try await sessions.revokeAll(userID: user)
            let keys = try await apiKeys?.revokeAll(userID: user) ?? 0
            // Pending codes and links for the user or its address stop working.
            if let codes { try await codes.forget(email: (try? await passwords.email(ofUser: user))?.value, userID: user) }
            try await passwords.forget(userID: user)
            let links = try await oauth?.accounts.forget(userID: user) ?? 0
            // Memberships end; an organisation the user alone owned passes to its next admin
            // or member, or goes when nobody is left.
            let memberships = try await orgs.forget(userID: user)
            // The user's uploads go with the account (rows logged, then bytes), as in a purge.
            var removedFiles = 0
            if let files { removedFiles = try await purgeFiles(of: user, files) }
            let entity = data.manifest.auth.userEntity
            if data.codecs[entity] != nil, try await data.get(entity, id: user) != nil {
                _ = try await data.delete(entity, id: user, auth: .admin)
            }
            let answer = HTTPSupport.json(.object([("deleted", true), ("revoked_sessions", .int(Int64(sessionsEnded))),
                                                   ("revoked_api_keys", .int(Int64(keys))), ("unlinked_accounts", .int(Int64(links))),
                                                   ("deleted_files", .int(Int64(removedFiles))), ("left_orgs", .int(Int64(memberships)))]))
            return withoutSessionCookie(req, answer)
        }
    }
}
