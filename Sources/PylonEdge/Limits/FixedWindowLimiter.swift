import NIOConcurrencyHelpers
import NIOCore
import PylonCore

/// Counts events per key in fixed windows: a key may have `limit` events in each window,
/// which starts at its first event (so two windows never share an instant, unlike aligned
/// windows, and a client cannot double its rate across a clock boundary it can predict).
///
/// It sits on the path of every request (`RequestRateLimit`), so one check is a lock and a
/// dictionary update on 16 bytes, with no allocation once the key is known. The keys are
/// spread over `stripeCount` independently locked stripes (by the key's hash, which is
/// seeded per process, so a client cannot aim at one stripe), so the event loops rarely wait
/// for each other.
///
/// Memory stays bounded whatever the clients do: each stripe drops the keys whose window
/// has ended once per window, and holds at most `maxKeys / stripeCount` keys. A key that
/// arrives while its stripe is full is let through uncounted until the next sweep makes
/// room: refusing it instead would let anyone who can send from many addresses lock every
/// new client out. (Pylon keeps a timestamp list per IP and never drops one.)
final class FixedWindowLimiter<Key: Hashable & Sendable>: Sendable {
    let limit: Int
    let windowNanos: UInt64
    private let stripes: [Stripe]
    private let keysPerStripe: Int

    static var stripeCount: Int { HostConfig.minRateLimitClients }

    private struct Window {
        var start: UInt64
        var count: Int
    }

    /// One lock's share of the keys. `counts` and `sweepAt` are touched only under `lock`.
    private final class Stripe: @unchecked Sendable {
        let lock = NIOLock()
        var counts: [Key: Window] = [:]
        var sweepAt: UInt64 = 0
    }

    /// `limit` events per `windowSeconds` per key; at most `maxKeys` keys tracked at once.
    init(limit: Int, windowSeconds: Int, maxKeys: Int) {
        self.limit = max(1, limit)
        self.windowNanos = UInt64(max(1, windowSeconds)) * 1_000_000_000
        self.stripes = (0..<Self.stripeCount).map { _ in Stripe() }
        self.keysPerStripe = max(1, maxKeys / Self.stripeCount)
    }

    /// The monotonic clock the windows are measured on.
    static var now: UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// Counts one event for `key`. nil: within the limit. Otherwise the event is refused (and
    /// not counted) and the result is the whole seconds until the key's window ends, at
    /// least 1 (a `Retry-After` value).
    func take(_ key: Key, now: UInt64 = FixedWindowLimiter.now) -> Int? {
        let stripe = stripes[Int(UInt(bitPattern: key.hashValue) % UInt(Self.stripeCount))]
        return stripe.lock.withLock { () -> Int? in
            if let i = stripe.counts.index(forKey: key) {
                let w = stripe.counts.values[i]
                if now &- w.start >= windowNanos {
                    stripe.counts.values[i] = Window(start: now, count: 1)
                    return nil
                }
                if w.count >= limit {
                    let left = w.start &+ windowNanos &- now
                    return max(1, Int((left + 999_999_999) / 1_000_000_000))
                }
                stripe.counts.values[i].count = w.count + 1
                return nil
            }
            if now >= stripe.sweepAt {
                let window = windowNanos
                stripe.counts = stripe.counts.filter { now &- $0.value.start < window }
                stripe.sweepAt = now &+ windowNanos
            }
            if stripe.counts.count < keysPerStripe {
                stripe.counts[key] = Window(start: now, count: 1)
            }
            return nil
        }
    }

    /// Whether `key` has used up its window: the whole seconds until it ends (at least 1),
    /// or nil. Counts nothing (`ApiKeyGuesses` counts only failures, and asks first).
    func waiting(_ key: Key, now: UInt64 = FixedWindowLimiter.now) -> Int? {
        let stripe = stripes[Int(UInt(bitPattern: key.hashValue) % UInt(Self.stripeCount))]
        return stripe.lock.withLock { () -> Int? in
            guard let w = stripe.counts[key], now &- w.start < windowNanos, w.count >= limit else { return nil }
            return max(1, Int((w.start &+ windowNanos &- now + 999_999_999) / 1_000_000_000))
        }
    }

    /// Keys tracked now (for tests of the memory bound).
    var trackedKeys: Int { stripes.reduce(0) { n, s in n + s.lock.withLock { s.counts.count } } }
}
