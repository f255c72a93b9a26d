#if canImport(Glibc)
import Glibc
#endif

/// Bytes a value is charged for `maxmemory`, beyond its payload: an estimate of the
/// allocator and bookkeeping overhead per element, in the spirit of Redis's
/// `used_memory` (which is exact only for its own allocator).
let elementOverhead = 24

/// A list: a ring buffer of owned byte strings (O(1) push/pop at both ends).
final class ListValue {
    private var buf: UnsafeMutablePointer<RBytes>
    private var cap: Int
    private var head = 0
    private(set) var count = 0
    private(set) var bytes = 0

    init() {
        cap = 8
        buf = .allocate(capacity: cap)
    }

    deinit {
        for i in 0..<count { buf[(head + i) & (cap - 1)].free() }
        buf.deallocate()
    }

    @inline(__always) subscript(i: Int) -> RBytes { buf[(head + i) & (cap - 1)] }

    private func grow() {
        let n = cap * 2
        let nb = UnsafeMutablePointer<RBytes>.allocate(capacity: n)
        for i in 0..<count { nb[i] = buf[(head + i) & (cap - 1)] }
        buf.deallocate()
        buf = nb
        cap = n
        head = 0
    }

    @inline(__always) func pushFront(_ v: RBytes) {
        if count == cap { grow() }
        head = (head - 1) & (cap - 1)
        buf[head] = v
        count += 1
        bytes += v.len + elementOverhead
    }

    @inline(__always) func pushBack(_ v: RBytes) {
        if count == cap { grow() }
        buf[(head + count) & (cap - 1)] = v
        count += 1
        bytes += v.len + elementOverhead
    }

    /// Removes and returns the first element (the caller frees it).
    @inline(__always) func popFront() -> RBytes {
        let v = buf[head]
        head = (head + 1) & (cap - 1)
        count -= 1
        bytes -= v.len + elementOverhead
        return v
    }

    @inline(__always) func popBack() -> RBytes {
        let v = buf[(head + count - 1) & (cap - 1)]
        count -= 1
        bytes -= v.len + elementOverhead
        return v
    }

    /// Keeps elements `start...stop` (already clamped, start <= stop), frees the rest.
    func keep(_ start: Int, _ stop: Int) {
        var kept: [RBytes] = []
        kept.reserveCapacity(stop - start + 1)
        for i in 0..<count {
            let v = self[i]
            if i >= start && i <= stop { kept.append(v) } else { v.free() }
        }
        replace(kept)
    }

    /// Removes elements equal to `v`: `limit` > 0 from the head, < 0 from the tail,
    /// 0 all. Returns how many were removed.
    func removeEqual(_ v: Arg, limit: Int) -> Int {
        var removed = 0
        var marks = [Bool](repeating: false, count: count)
        if limit >= 0 {
            for i in 0..<count where limit == 0 || removed < limit {
                if self[i].arg.equals(v) { marks[i] = true; removed += 1 }
            }
        } else {
            for i in stride(from: count - 1, through: 0, by: -1) where removed < -limit {
                if self[i].arg.equals(v) { marks[i] = true; removed += 1 }
            }
        }
        if removed == 0 { return 0 }
        var kept: [RBytes] = []
        kept.reserveCapacity(count - removed)
        for i in 0..<count {
            if marks[i] { self[i].free() } else { kept.append(self[i]) }
        }
        replace(kept)
        return removed
    }

    private func replace(_ items: [RBytes]) {
        var c = 8
        while c < items.count { c <<= 1 }
        buf.deallocate()
        buf = .allocate(capacity: c)
        cap = c
        head = 0
        count = items.count
        bytes = 0
        for (i, v) in items.enumerated() {
            buf[i] = v
            bytes += v.len + elementOverhead
        }
    }
}

/// A hash: field → value.
final class HashValue {
    let map = ByteMap<RBytes>(capacity: 4)
    var bytes = 0

    deinit { map.removeAll { $0.free() } }

    /// Sets `field` to `value`; true when the field is new.
    @inline(__always)
    func set(_ field: Arg, _ value: Arg) -> Bool {
        let h = hashBytes(field.ptr, field.len)
        let i = map.find(field.ptr, field.len, h)
        if i >= 0 {
            let old = map.values[i]
            if old.len == value.len {
                // Same size: overwrite in place, no allocation.
                if value.len > 0 { memcpy(old.ptr, value.ptr, value.len) }
            } else {
                bytes += value.len - old.len
                old.free()
                map.values[i] = RBytes(copying: value)
            }
            return false
        }
        map.insert(copying: field, hash: h, RBytes(copying: value))
        bytes += field.len + value.len + 2 * elementOverhead
        return true
    }

    @inline(__always) func get(_ field: Arg) -> RBytes? {
        let i = map.find(field)
        return i >= 0 ? map.values[i] : nil
    }

    func delete(_ field: Arg) -> Bool {
        let i = map.find(field)
        guard i >= 0 else { return false }
        bytes -= map.keys[i].len + map.values[i].len + 2 * elementOverhead
        map.remove(at: i).free()
        return true
    }
}

/// A set of byte strings.
final class SetValue {
    let map = ByteMap<Void>(capacity: 4)
    var bytes = 0

    @inline(__always) func contains(_ m: Arg) -> Bool { map.find(m) >= 0 }

    func add(_ m: Arg) -> Bool {
        let h = hashBytes(m.ptr, m.len)
        if map.find(m.ptr, m.len, h) >= 0 { return false }
        map.insert(copying: m, hash: h, ())
        bytes += m.len + elementOverhead
        return true
    }

    func remove(_ m: Arg) -> Bool {
        let i = map.find(m)
        guard i >= 0 else { return false }
        bytes -= m.len + elementOverhead
        map.remove(at: i)
        return true
    }

    func forEach(_ body: (Arg) -> Void) {
        for i in 0..<map.top where map.isLive(i) { body(map.keys[i].arg) }
    }
}

/// A sorted set: member → score in a `ByteMap`, plus the members ordered by
/// (score, member) in a sorted array (binary search for rank and ranges; inserts shift
/// the array, which is fine up to some hundred thousand members per key).
final class ZSetValue {
    let scores = ByteMap<Double>(capacity: 4)
    /// Arena positions in `scores`, ordered by (score, member bytes).
    private(set) var order: [Int] = []
    var bytes = 0
    var count: Int { order.count }

    @inline(__always) func member(at rank: Int) -> Arg { scores.keys[order[rank]].arg }
    @inline(__always) func score(at rank: Int) -> Double { scores.values[order[rank]] }

    func score(_ m: Arg) -> Double? {
        let i = scores.find(m)
        return i >= 0 ? scores.values[i] : nil
    }

    private func less(_ s: Double, _ m: Arg, than pos: Int) -> Bool {
        let ps = scores.values[pos]
        if s != ps { return s < ps }
        return m.compare(scores.keys[pos].arg) < 0
    }

    /// First rank whose (score, member) is not less than (s, m).
    private func lowerBound(_ s: Double, _ m: Arg) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if less(s, m, than: order[mid]) || (scores.values[order[mid]] == s && scores.keys[order[mid]].arg.equals(m)) {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        return lo
    }

    /// Rank of a present member.
    func rank(_ m: Arg) -> Int? {
        guard let s = score(m) else { return nil }
        return lowerBound(s, m)
    }

    /// Sets the score; true when the member is new.
    @discardableResult
    func set(_ m: Arg, _ s: Double) -> Bool {
        let h = hashBytes(m.ptr, m.len)
        let i = scores.find(m.ptr, m.len, h)
        if i >= 0 {
            let old = scores.values[i]
            if old == s { return false }
            order.remove(at: lowerBound(old, m))
            scores.values[i] = s
            order.insert(i, at: lowerBound(s, m))
            return false
        }
        let pos = scores.insert(copying: m, hash: h, s)
        order.insert(pos, at: lowerBound(s, m))
        bytes += m.len + 2 * elementOverhead
        return true
    }

    func remove(_ m: Arg) -> Bool {
        let i = scores.find(m)
        guard i >= 0 else { return false }
        order.remove(at: lowerBound(scores.values[i], m))
        bytes -= m.len + 2 * elementOverhead
        scores.remove(at: i)
        return true
    }

    /// First rank with score > (or >=) `min`.
    func firstRank(above min: Double, exclusive: Bool) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let s = scores.values[order[mid]]
            if exclusive ? s > min : s >= min { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// Last rank with score < (or <=) `max`, or -1.
    func lastRank(below max: Double, exclusive: Bool) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let s = scores.values[order[mid]]
            if exclusive ? s < max : s <= max { lo = mid + 1 } else { hi = mid }
        }
        return lo - 1
    }
}
