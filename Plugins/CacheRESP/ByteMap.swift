#if canImport(Glibc)
import Glibc
#endif

/// A hash table from byte-string keys to `V`, used for the keyspace, hash fields, set
/// members and sorted-set members.
///
/// Entries live in an arena (parallel arrays indexed by a stable `Int` position, with a
/// free list); an open-addressing index (linear probing, backward-shift deletion) maps a
/// key's hash to its arena position. Positions never move while an entry lives, which
/// is what `SCAN` cursors and the expiry index rely on. Lookups take a borrowed
/// `(pointer, length)`, so a lookup never allocates.
///
/// The map owns its keys (freed on removal) and its values' Swift lifetimes; values that
/// own manual memory (`RBytes`) are handed back by `remove` for the caller to free.
/// Threads: owned by the event-loop thread; not thread-safe.
final class ByteMap<V> {
    private(set) var keys: UnsafeMutablePointer<RBytes>
    private(set) var values: UnsafeMutablePointer<V>
    private var hashes: UnsafeMutablePointer<UInt64>
    private var live: UnsafeMutablePointer<Bool>
    private var arenaCapacity: Int
    /// Arena positions in use or freed are all below `top`.
    private(set) var top = 0
    private var freeList: [Int] = []

    private var slots: UnsafeMutablePointer<Int32>
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int = 8) {
        arenaCapacity = max(4, capacity)
        keys = .allocate(capacity: arenaCapacity)
        values = .allocate(capacity: arenaCapacity)
        hashes = .allocate(capacity: arenaCapacity)
        live = .allocate(capacity: arenaCapacity)
        var n = 8
        while n * 7 < arenaCapacity * 10 { n <<= 1 }
        slots = .allocate(capacity: n)
        slots.initialize(repeating: -1, count: n)
        mask = n - 1
    }

    deinit {
        removeAll(dispose: { _ in })
        keys.deallocate()
        values.deallocate()
        hashes.deallocate()
        live.deallocate()
        slots.deallocate()
    }

    @inline(__always) func isLive(_ i: Int) -> Bool { i < top && live[i] }

    /// The arena position of `key`, or -1.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64) -> Int {
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let i = Int(slots[s])
            if i < 0 { return -1 }
            if hashes[i] == h {
                let k = keys[i]
                if k.len == n && (n == 0 || memcmp(k.ptr, p, n) == 0) { return i }
            }
            s = (s + 1) & mask
        }
    }

    @inline(__always) func find(_ a: Arg) -> Int { find(a.ptr, a.len, hashBytes(a.ptr, a.len)) }

    /// Inserts a key known to be absent (ownership of `key` moves into the map); returns
    /// its position.
    @discardableResult
    func insert(_ key: RBytes, hash h: UInt64, _ value: V) -> Int {
        if (count + 1) * 10 > (mask + 1) * 7 { rehash((mask + 1) * 2) }
        let i: Int
        if let f = freeList.popLast() {
            i = f
        } else {
            if top == arenaCapacity { growArena() }
            i = top
            top += 1
        }
        keys[i] = key
        hashes[i] = h
        live[i] = true
        (values + i).initialize(to: value)
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] >= 0 { s = (s + 1) & mask }
        slots[s] = Int32(i)
        count += 1
        return i
    }

    /// Inserts a copy of `a` (which must be absent).
    @discardableResult
    func insert(copying a: Arg, hash h: UInt64, _ value: V) -> Int {
        insert(RBytes(copying: a), hash: h, value)
    }

    /// Removes the entry at position `i`; frees its key and returns its value.
    @discardableResult
    func remove(at i: Int) -> V {
        let h = hashes[i]
        var s = Int(truncatingIfNeeded: h) & mask
        while Int(slots[s]) != i { s = (s + 1) & mask }
        // Backward-shift deletion keeps every probe chain unbroken without tombstones.
        var j = s
        while true {
            j = (j + 1) & mask
            let e = Int(slots[j])
            if e < 0 { break }
            let home = Int(truncatingIfNeeded: hashes[e]) & mask
            let between = s <= j ? (home > s && home <= j) : (home > s || home <= j)
            if !between {
                slots[s] = slots[j]
                s = j
            }
        }
        slots[s] = -1
        keys[i].free()
        live[i] = false
        count -= 1
        let v = (values + i).move()
        if count == 0 {
            // Empty: reset the arena so positions (and SCAN cursors) start over.
            top = 0
            freeList.removeAll(keepingCapacity: true)
        } else {
            freeList.append(i)
        }
        return v
    }

    /// Removes everything; `dispose` receives each value (to free what it owns).
    func removeAll(dispose: (inout V) -> Void) {
        for i in 0..<top where live[i] {
            keys[i].free()
            dispose(&values[i])
            (values + i).deinitialize(count: 1)
            live[i] = false
        }
        slots.update(repeating: -1, count: mask + 1)
        top = 0
        count = 0
        freeList.removeAll()
    }

    /// A random live position (for eviction and expiry sampling), or -1 when empty.
    func randomPosition() -> Int {
        guard count > 0 else { return -1 }
        var s = Int(truncatingIfNeeded: UInt64.random(in: 0...UInt64(mask)))
        while slots[s] < 0 { s = (s + 1) & mask }
        return Int(slots[s])
    }

    /// Next live position at or after `from`, or nil.
    @inline(__always)
    func nextLive(from: Int) -> Int? {
        var i = from
        while i < top {
            if live[i] { return i }
            i += 1
        }
        return nil
    }

    private func growArena() {
        let n = arenaCapacity * 2
        let k = UnsafeMutablePointer<RBytes>.allocate(capacity: n)
        k.moveInitialize(from: keys, count: top)
        keys.deallocate()
        keys = k
        let v = UnsafeMutablePointer<V>.allocate(capacity: n)
        for i in 0..<top where live[i] { (v + i).moveInitialize(from: values + i, count: 1) }
        values.deallocate()
        values = v
        let h = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
        h.moveInitialize(from: hashes, count: top)
        hashes.deallocate()
        hashes = h
        let l = UnsafeMutablePointer<Bool>.allocate(capacity: n)
        l.moveInitialize(from: live, count: top)
        live.deallocate()
        live = l
        arenaCapacity = n
    }

    private func rehash(_ n: Int) {
        slots.deallocate()
        slots = .allocate(capacity: n)
        slots.initialize(repeating: -1, count: n)
        mask = n - 1
        for i in 0..<top where live[i] {
            var s = Int(truncatingIfNeeded: hashes[i]) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(i)
        }
    }
}
