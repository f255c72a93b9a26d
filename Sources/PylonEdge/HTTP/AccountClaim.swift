import Foundation
import PylonCore
import PylonData
import HTTPTypes
import Hummingbird

/// Claiming an account by proving its address (the defence against pre-hijacked accounts).
///
/// Anyone can register a password account with someone else's address, and a provider that
/// does not vouch for an email can create an account with it. When the address's owner
/// later proves it — a magic code or link, a password-reset link, or a provider that says
/// the email is verified — they are signed in to that account. If its address had never
/// been proven (`emailVerified` empty, or the user entity has no such field), whatever was
/// set up on it before may be a stranger's, so it is removed first: the password, every
/// session (and so every stream), every API key, every provider link and any pending
/// email-change link. The owner then starts clean; a password they set themselves goes too
/// and can be set again.
extension RouteContext {
    /// Claims the account that has `email`, if any and if its address was never proven.
    func claimAccount(withEmail email: EmailAddress) async throws {
        guard let userID = try await passwords.user(withEmail: email) else { return }
        try await claimIfUnproven(userID)
    }

    /// Claims `userID` (see above) unless its address was proven already.
    func claimIfUnproven(_ userID: String) async throws {
        guard try await !passwords.emailProven(userID: userID) else { return }
        try await passwords.forget(userID: userID)
        _ = try await sessions.revokeAll(userID: userID)
        _ = try await apiKeys?.revokeAll(userID: userID)
        _ = try await oauth?.accounts.forget(userID: userID)
        try await dropPendingEmailChanges(userID)
    }

    /// The answer to HEAD on a single-use link (mail scanners and link previews send it):
    /// 200 and nothing done, so only the person who opens the link uses it.
    static var linkPreview: Response { Response(status: .ok, headers: [.cacheControl: "no-store"]) }

    /// What a credential change ends besides sessions: pending email-change links, so a
    /// thief who asked for one with a stolen session cannot finish it afterwards.
    func dropPendingEmailChanges(_ userID: String) async throws {
        try await codes?.drop(.emailChange, userID: userID)
    }
}
