import Foundation

/// The session behind a stream: its token hash (what revocations name) and its expiry
/// (unix seconds, 0 = never), which a change of the session row may move.
package final class StreamSession: @unchecked Sendable {
    package let tokenHash: String
    private let lock = NSLock()
    private var expires: Int64

    package init(tokenHash: String, expiresAt: Int64) {
        self.tokenHash = tokenHash
        self.expires = expiresAt
    }

    var expiresAt: Int64 {
        get { lock.withLock { expires } }
        set { lock.withLock { expires = newValue } }
    }

    func isExpired(at now: Int64) -> Bool {
        let e = expiresAt
        return e != 0 && now >= e
    }
}
