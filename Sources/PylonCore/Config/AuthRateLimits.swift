import Foundation

/// Pylon's auth buckets (pylon-aux.md §1.11): routes that create something for a caller who
/// has not proven anything yet (a guest session is a database write) or that guess at a
/// secret are counted per client address per minute and, where an account is named, per
/// account per hour. Over either: 429 `RATE_LIMITED` with `Retry-After`.
public enum AuthBucket: String, CaseIterable, Sendable {
    /// Password login, TOTP verify.
    case login
    /// Anything that mints or sends: guest and anonymous sessions, magic codes, sign-up.
    case send
    /// Passkey and wallet verification.
    case verify
}

/// The caps of each bucket: per client address per minute, per account per hour (0: that
/// side is not limited). Set by `PYLON_AUTH_RATE_LIMIT_<BUCKET>=<per-ip>[,<per-account>]`.
public struct AuthRateLimits: Sendable {
    public struct Caps: Sendable, Equatable {
        public var perAddressPerMinute: Int
        public var perAccountPerHour: Int
    }

    public var caps: [AuthBucket: Caps]

    /// Pylon's values.
    public static let pylon = AuthRateLimits(caps: [
        .login: Caps(perAddressPerMinute: 5, perAccountPerHour: 30),
        .send: Caps(perAddressPerMinute: 3, perAccountPerHour: 10),
        .verify: Caps(perAddressPerMinute: 30, perAccountPerHour: 100),
    ])

    /// `text` as `PYLON_AUTH_RATE_LIMIT_<BUCKET>` writes it: `per-ip` or `per-ip,per-account`.
    static func parse(_ text: String) -> Caps? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard (1...2).contains(parts.count), let ip = Int(parts[0]), ip >= 0 else { return nil }
        guard parts.count == 2 else { return Caps(perAddressPerMinute: ip, perAccountPerHour: 0) }
        guard let account = Int(parts[1]), account >= 0 else { return nil }
        return Caps(perAddressPerMinute: ip, perAccountPerHour: account)
    }
}
