import Foundation
import PylonCore

/// Counts auth attempts in `AuthRateLimits`' buckets. Process-wide, like Pylon's; every
/// counter's memory is bounded (`FixedWindowLimiter`).
package final class AuthRateLimiter: Sendable {
    private let byAddress: [AuthBucket: FixedWindowLimiter<ClientAddress>]
    private let byAccount: [AuthBucket: FixedWindowLimiter<String>]

    package init(_ limits: AuthRateLimits, maxKeys: Int) {
        var a: [AuthBucket: FixedWindowLimiter<ClientAddress>] = [:]
        var b: [AuthBucket: FixedWindowLimiter<String>] = [:]
        for (bucket, caps) in limits.caps {
            if caps.perAddressPerMinute > 0 {
                a[bucket] = FixedWindowLimiter(limit: caps.perAddressPerMinute, windowSeconds: 60, maxKeys: maxKeys)
            }
            if caps.perAccountPerHour > 0 {
                b[bucket] = FixedWindowLimiter(limit: caps.perAccountPerHour, windowSeconds: 3600, maxKeys: maxKeys)
            }
        }
        byAddress = a
        byAccount = b
    }

    /// Counts one attempt in `bucket` by `client` (and for `account`, lowercased, when the
    /// route names one); throws 429 when either is over its cap.
    func check(_ bucket: AuthBucket, client: ClientAddress, account: String? = nil) throws(HostError) {
        if let wait = byAddress[bucket]?.take(client) {
            throw .rateLimited(retryAfter: wait, "your address has reached the \(bucket.rawValue) limit of this kind of auth request (PYLON_AUTH_RATE_LIMIT_\(bucket.rawValue.uppercased())): retry after \(wait) s")
        }
        if let account, let wait = byAccount[bucket]?.take(account.lowercased()) {
            throw .rateLimited(retryAfter: wait, "this account has reached the \(bucket.rawValue) limit of this kind of auth request (PYLON_AUTH_RATE_LIMIT_\(bucket.rawValue.uppercased())): retry after \(wait) s")
        }
    }
}
