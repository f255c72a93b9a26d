import Foundation

/// The session behind a stream: its token hash (what revocations name), its expiry
/// (unix seconds, 0 = never), which a change of the session row may move, and the
/// organisation it acted in when the stream opened: a stream reads as that organisation,
/// so it ends when its session leaves it (`ChangeHub.updateSession`).
package final class StreamSession: @unchecked Sendable {
    package let tokenHash: String
    package let tenantID: String?
    private let lock = NSLock()
    private var expires: Int64

    package init(tokenHash: String, expiresAt: Int64, tenantID: String? = nil) {
        self.tokenHash = tokenHash
        self.tenantID = tenantID
        self.expires = expiresAt
    }

    var expiresAt: Int64 {
        get { lock.withLock { expires } }
        set { lock.withLock { expires = newValue } }
    }

    /// Opened with a JWT (`SessionStore.jwtStream`), which never carries `auth.email`.
    var isJWT: Bool { tokenHash.hasPrefix(SessionStore.jwtPrefix) }

    func isExpired(at now: Int64) -> Bool {
        let e = expiresAt
        return e != 0 && now >= e
    }
}
