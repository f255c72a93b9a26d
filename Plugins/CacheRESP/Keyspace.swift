#if canImport(Glibc)
import Glibc
#endif

/// The type of a value, as `TYPE` names it.
enum Kind: UInt8 {
    case string, list, hash, set, zset

    var name: StaticString {
        switch self {
        case .string: "string"
        case .list: "list"
        case .hash: "hash"
        case .set: "set"
        case .zset: "zset"
        }
    }
}

/// One key's value and metadata. Strings are held as bytes, or as an integer after
/// INCR-style commands (formatted on read, as Redis's int encoding); other types are
/// objects.
struct Entry {
    var kind: Kind
    var isInt = false
    var int: Int64 = 0
    var str: RBytes?
    var obj: AnyObject?
    /// Absolute expiry in Unix milliseconds; 0 = none.
    var expireAt: Int64 = 0
    /// Position in `Keyspace.expiring`, -1 when none.
    var expiringIndex = -1
    /// Logical access time for approximate LRU.
    var lru: UInt64 = 0
    /// Bytes charged for `maxmemory`.
    var charged = 0

    init(string bytes: RBytes) {
        kind = .string
        str = bytes
    }

    init(int v: Int64) {
        kind = .string
        isInt = true
        int = v
    }

    init(kind: Kind, obj: AnyObject) {
        self.kind = kind
        self.obj = obj
    }

    /// Frees the manual memory this entry owns (objects go with ARC).
    func dispose() { str?.free() }

    var list: ListValue { unsafeDowncast(obj!, to: ListValue.self) }
    var hash: HashValue { unsafeDowncast(obj!, to: HashValue.self) }
    var set: SetValue { unsafeDowncast(obj!, to: SetValue.self) }
    var zset: ZSetValue { unsafeDowncast(obj!, to: ZSetValue.self) }

    /// Runs `body` with the string value's bytes (formatting an integer first).
    @inline(__always)
    func withString<R>(_ body: (Arg) -> R) -> R {
        if isInt {
            var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)
            return withUnsafeMutableBytes(of: &tmp) { r in
                let p = r.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let n = formatInt64(int, p)
                return body(Arg(ptr: UnsafePointer(p), len: n))
            }
        }
        return body(str!.arg)
    }

    var payloadBytes: Int {
        switch kind {
        case .string: isInt ? 8 : str!.len
        case .list: list.bytes
        case .hash: hash.bytes
        case .set: set.bytes
        case .zset: zset.bytes
        }
    }
}

/// Unix time in milliseconds.
@inline(__always) func unixMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// The one database (db 0): keys, expiry and memory accounting with approximate-LRU
/// eviction. Owned by the event-loop thread.
final class Keyspace {
    let map = ByteMap<Entry>(capacity: 1024)
    /// Positions of keys that have an expiry (for active expiry sampling).
    private(set) var expiring: [Int] = []
    private var clock: UInt64 = 0
    /// Bytes charged for all keys (see `elementOverhead`).
    private(set) var used = 0
    var maxmemory = 0
    var evictionEnabled = true
    // Counters for INFO.
    var hits = 0, misses = 0, expiredKeys = 0, evictedKeys = 0

    static let keyOverhead = 64

    var count: Int { map.count }

    /// The position of a live (not expired) key, or -1. Expired keys are deleted here
    /// (lazy expiry). Counts a hit or miss when `countStats`.
    @inline(__always)
    func lookup(_ key: Arg, countStats: Bool = false) -> Int {
        let i = map.find(key)
        if i < 0 {
            if countStats { misses += 1 }
            return -1
        }
        let e = map.values[i].expireAt
        if e != 0 && e <= unixMillis() {
            delete(at: i)
            expiredKeys += 1
            if countStats { misses += 1 }
            return -1
        }
        clock &+= 1
        map.values[i].lru = clock
        if countStats { hits += 1 }
        return i
    }

    @inline(__always) func entry(_ i: Int) -> UnsafeMutablePointer<Entry> { map.values + i }

    /// Adds a key known to be absent (call `lookup` first); returns its position.
    @discardableResult
    func add(_ key: Arg, _ e: Entry) -> Int {
        var e = e
        clock &+= 1
        e.lru = clock
        e.charged = Self.keyOverhead + key.len + e.payloadBytes
        used += e.charged
        // Not `recharge`: a new container is empty until the command fills it.
        return map.insert(copying: key, hash: hashBytes(key.ptr, key.len), e)
    }

    /// Replaces the value at `i`, keeping the key; drops any expiry unless `keepTTL`.
    func replace(at i: Int, _ e: Entry, keepTTL: Bool = false) {
        let p = entry(i)
        p.pointee.dispose()
        let expireAt = p.pointee.expireAt
        let idx = p.pointee.expiringIndex
        let charged = p.pointee.charged
        p.pointee = e
        p.pointee.expiringIndex = idx
        p.pointee.expireAt = expireAt
        p.pointee.charged = charged
        clock &+= 1
        p.pointee.lru = clock
        if !keepTTL { setExpire(i, 0) }
        recharge(i)
    }

    func delete(at i: Int) {
        setExpire(i, 0)
        used -= map.values[i].charged
        let e = map.remove(at: i)
        e.dispose()
    }

    /// Removes the key at `i` and hands its value to the caller (who now owns it),
    /// without its expiry.
    func take(at i: Int) -> Entry {
        setExpire(i, 0)
        used -= map.values[i].charged
        var e = map.remove(at: i)
        e.charged = 0
        e.expiringIndex = -1
        return e
    }

    /// Deletes `key` if present (and live); true when something was deleted.
    func delete(_ key: Arg) -> Bool {
        let i = lookup(key)
        if i < 0 { return false }
        delete(at: i)
        return true
    }

    /// Sets (or with 0 clears) the absolute expiry of the key at `i`.
    func setExpire(_ i: Int, _ at: Int64) {
        let p = entry(i)
        if at == 0 {
            let idx = p.pointee.expiringIndex
            if idx >= 0 {
                let last = expiring.removeLast()
                if idx < expiring.count {
                    expiring[idx] = last
                    map.values[last].expiringIndex = idx
                }
                p.pointee.expiringIndex = -1
            }
            p.pointee.expireAt = 0
        } else {
            if p.pointee.expiringIndex < 0 {
                p.pointee.expiringIndex = expiring.count
                expiring.append(i)
            }
            p.pointee.expireAt = at
        }
    }

    /// Re-computes what the key at `i` is charged after its value changed; an emptied
    /// container is deleted (Redis never keeps empty aggregates).
    @inline(__always)
    func recharge(_ i: Int) {
        let p = entry(i)
        let payload = p.pointee.payloadBytes
        if p.pointee.kind != .string && payload == 0 {
            delete(at: i)
            return
        }
        let c = Self.keyOverhead + map.keys[i].len + payload
        used += c - p.pointee.charged
        p.pointee.charged = c
    }

    func flush() {
        map.removeAll { $0.dispose() }
        expiring.removeAll()
        used = 0
    }

    /// Active expiry: samples keys with an expiry and deletes the expired ones, repeating
    /// while more than a quarter of a sample was expired (Redis's cycle), within `budget`
    /// samples. Returns how many were deleted.
    @discardableResult
    func expireCycle(budget: Int = 2000) -> Int {
        var deleted = 0
        var sampled = 0
        let now = unixMillis()
        while !expiring.isEmpty && sampled < budget {
            var expiredInRound = 0
            let round = min(20, expiring.count)
            for _ in 0..<round where !expiring.isEmpty {
                let idx = Int.random(in: 0..<expiring.count)
                let pos = expiring[idx]
                if map.values[pos].expireAt <= now {
                    delete(at: pos)
                    expiredInRound += 1
                }
            }
            sampled += round
            deleted += expiredInRound
            if expiredInRound * 4 <= round { break }
        }
        expiredKeys += deleted
        return deleted
    }

    /// Deletes every expired key (the HTTP CLEANUP command); returns how many.
    func expireAll() -> Int {
        let now = unixMillis()
        var n = 0
        var i = 0
        while i < expiring.count {
            let pos = expiring[i]
            if map.values[pos].expireAt <= now {
                delete(at: pos) // moves the last element into slot i
                n += 1
            } else {
                i += 1
            }
        }
        expiredKeys += n
        return n
    }

    /// Evicts approximately-least-recently-used keys until under `maxmemory`: each round
    /// samples 5 random keys and evicts the oldest (Redis's `maxmemory-samples`).
    /// Returns false when memory is still over the limit (nothing left to evict, or
    /// eviction disabled).
    func evictIfNeeded() -> Bool {
        guard maxmemory > 0 else { return true }
        while used > maxmemory {
            guard evictionEnabled, map.count > 0 else { return false }
            var best = -1
            var bestLRU = UInt64.max
            for _ in 0..<5 {
                let pos = map.randomPosition()
                if pos >= 0 && map.values[pos].lru < bestLRU {
                    best = pos
                    bestLRU = map.values[pos].lru
                }
            }
            if best < 0 { return false }
            delete(at: best)
            evictedKeys += 1
        }
        return true
    }
}
