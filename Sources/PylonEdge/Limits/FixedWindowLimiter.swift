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
/// Memory stays bounded whatever the clients do, and a full table never undercounts: each
/// stripe holds at most `maxKeys / stripeCount` keys and drops the ones whose window has
/// ended (once per window, and more often while it is full). A key that finds its stripe
/// full of live windows is counted in the stripe's `Overflow` counters instead, which may
/// only overestimate: an attacker who fills the table from many addresses gains nothing
/// for the key they target (the auth limiter's per-account counts), and to lock out a new
/// client they must use up about `limit` events in every one of `overflowSlots` counters
/// within one window. (Pylon keeps a timestamp list per IP and never drops one; earlier
/// versions here let a key that found the table full through uncounted.)
final class FixedWindowLimiter<Key: Hashable & Sendable>: Sendable {
    let limit: Int
    let windowNanos: UInt64
    private let stripes: [Stripe]
    private let keysPerStripe: Int
    /// Counters in each stripe's `Overflow` (never fewer than 64, so a tiny table does not
    /// make every overflowing key share one count).
    let overflowSlots: Int
    /// How often a full stripe looks for ended windows to make room (a sixteenth of the window).
    private let fullSweepNanos: UInt64

    static var stripeCount: Int { HostConfig.minRateLimitClients }

    private struct Window {
        var start: UInt64
        var count: Int
    }

    /// Counts for keys that found their stripe full: one window for all (it starts at the
    /// first overflowing event after the last one ended), one counter per slot of the key's
    /// hash. Keys sharing a slot share a count, so a key's count here is at least its own
    /// number of events in the window: an overestimate, never an undercount. A key refused
    /// here adds nothing, so a counter never passes `limit`.
    private struct Overflow {
        var start: UInt64
        var counts: [UInt32]

        func live(at now: UInt64, window: UInt64) -> Bool { now &- start < window }
    }

    /// One lock's share of the keys. Every `var` is touched only under `lock`.
    private final class Stripe: @unchecked Sendable {
        let lock = NIOLock()
        var counts: [Key: Window] = [:]
        var lastSweep: UInt64 = 0
        /// nil until the stripe first fills (most limiters never do).
        var overflow: Overflow?
    }

    /// `limit` events per `windowSeconds` per key; at most `maxKeys` keys tracked at once.
    init(limit: Int, windowSeconds: Int, maxKeys: Int) {
        self.limit = min(max(1, limit), Int(UInt32.max))
        self.windowNanos = UInt64(max(1, windowSeconds)) * 1_000_000_000
        self.stripes = (0..<Self.stripeCount).map { _ in Stripe() }
        self.keysPerStripe = max(1, maxKeys / Self.stripeCount)
        self.overflowSlots = max(64, keysPerStripe)
        self.fullSweepNanos = max(1, windowNanos / 16)
    }

    /// The monotonic clock the windows are measured on.
    static var now: UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// Counts one event for `key`. nil: within the limit. Otherwise the event is refused (and
    /// not counted) and the result is the whole seconds until the key's window ends, at
    /// least 1 (a `Retry-After` value).
    func take(_ key: Key, now: UInt64 = FixedWindowLimiter.now) -> Int? {
        let hash = UInt(bitPattern: key.hashValue)
        let stripe = stripes[Int(hash % UInt(Self.stripeCount))]
        return stripe.lock.withLock { () -> Int? in
            if let i = stripe.counts.index(forKey: key) {
                let w = stripe.counts.values[i]
                if now &- w.start >= windowNanos {
                    stripe.counts.values[i] = Window(start: now, count: 1)
                    return nil
                }
                if w.count >= limit { return secondsLeft(of: w.start, at: now) }
                stripe.counts.values[i].count = w.count + 1
                return nil
            }
            sweepIfDue(stripe, now: now)
            // What the key may already have used while its stripe was full.
            let slot = overflowSlot(hash)
            var earlier = 0, since = now
            if let o = stripe.overflow, o.live(at: now, window: windowNanos) {
                earlier = Int(o.counts[slot])
                since = o.start
                if earlier >= limit { return secondsLeft(of: o.start, at: now) }
            }
            if stripe.counts.count < keysPerStripe {
                // Carried over with the overflow window's start, so the key's window ends
                // when the one those events were counted in does.
                stripe.counts[key] = Window(start: since, count: earlier + 1)
                return nil
            }
            countOverflow(stripe, slot: slot, now: now)
            return nil
        }
    }

    /// Whether `key` has used up its window: the whole seconds until it ends (at least 1),
    /// or nil. Counts nothing (`ApiKeyGuesses` counts only failures, and asks first).
    func waiting(_ key: Key, now: UInt64 = FixedWindowLimiter.now) -> Int? {
        let hash = UInt(bitPattern: key.hashValue)
        let stripe = stripes[Int(hash % UInt(Self.stripeCount))]
        return stripe.lock.withLock { () -> Int? in
            if let w = stripe.counts[key] {
                guard now &- w.start < windowNanos, w.count >= limit else { return nil }
                return secondsLeft(of: w.start, at: now)
            }
            guard let o = stripe.overflow, o.live(at: now, window: windowNanos),
                  Int(o.counts[overflowSlot(hash)]) >= limit else { return nil }
            return secondsLeft(of: o.start, at: now)
        }
    }

    /// Keys tracked now (for tests of the memory bound).
    var trackedKeys: Int { stripes.reduce(0) { n, s in n + s.lock.withLock { s.counts.count } } }

    /// Whole seconds (at least 1) until a window that began at `start` ends.
    private func secondsLeft(of start: UInt64, at now: UInt64) -> Int {
        // At most a window (a clock read before `start` would wrap).
        let left = min(start &+ windowNanos &- now, windowNanos)
        return max(1, Int((left + 999_999_999) / 1_000_000_000))
    }

    /// The key's overflow counter: bits of its hash the stripe choice did not use.
    private func overflowSlot(_ hash: UInt) -> Int {
        Int(hash / UInt(Self.stripeCount) % UInt(overflowSlots))
    }

    /// Drops ended windows: once per window, or every `fullSweepNanos` while the stripe is
    /// full, so room is made from ended windows before any key is counted in the overflow.
    /// Under `stripe.lock`.
    private func sweepIfDue(_ stripe: Stripe, now: UInt64) {
        let every = stripe.counts.count >= keysPerStripe ? fullSweepNanos : windowNanos
        guard now &- stripe.lastSweep >= every else { return }
        let window = windowNanos
        stripe.counts = stripe.counts.filter { now &- $0.value.start < window }
        stripe.lastSweep = now
    }

    /// Counts one event in `slot` of the stripe's overflow, starting a new overflow window
    /// when the last one has ended. Under `stripe.lock`.
    private func countOverflow(_ stripe: Stripe, slot: Int, now: UInt64) {
        if var o = stripe.overflow, o.live(at: now, window: windowNanos) {
            stripe.overflow = nil // keeps `counts` uniquely referenced: no copy
            o.counts[slot] += 1
            stripe.overflow = o
            return
        }
        var counts = stripe.overflow?.counts ?? []
        stripe.overflow = nil
        if counts.isEmpty {
            counts = [UInt32](repeating: 0, count: overflowSlots)
        } else {
            for i in counts.indices { counts[i] = 0 }
        }
        counts[slot] = 1
        stripe.overflow = Overflow(start: now, counts: counts)
    }
}
