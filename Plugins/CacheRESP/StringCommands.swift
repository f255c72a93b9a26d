#if canImport(Glibc)
import Glibc
#endif

/// String commands: GET SET MGET MSET SETNX GETDEL GETEX GETSET INCR INCRBY INCRBYFLOAT
/// DECR DECRBY APPEND STRLEN GETRANGE.
extension Engine {
    @inline(__always)
    func replyString(_ c: Client, _ p: UnsafeMutablePointer<Entry>) {
        if p.pointee.isInt { c.out.bulk(int: p.pointee.int) } else { c.out.bulk(p.pointee.str!) }
    }

    func get(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        let i = db.lookup(a[1], countStats: true)
        if i < 0 {
            c.out.null()
            return
        }
        let p = db.entry(i)
        guard p.pointee.kind == .string else {
            c.out.error(Err.wrongType)
            return
        }
        replyString(c, p)
    }

    /// Stores `value` at `key` (a new key or an overwrite), reusing the old buffer when
    /// the size is the same. Returns the position.
    @inline(__always)
    @discardableResult
    func store(_ key: Arg, _ value: Arg, at existing: Int, keepTTL: Bool = false) -> Int {
        if existing >= 0 {
            let p = db.entry(existing)
            if p.pointee.kind == .string && !p.pointee.isInt, let old = p.pointee.str, old.len == value.len {
                if value.len > 0 { memcpy(old.ptr, value.ptr, value.len) }
                if !keepTTL && p.pointee.expireAt != 0 { db.setExpire(existing, 0) }
                return existing
            }
            db.replace(at: existing, Entry(string: RBytes(copying: value)), keepTTL: keepTTL)
            return existing
        }
        return db.add(key, Entry(string: RBytes(copying: value)))
    }

    /// Parses SET/GETEX expiry options into an absolute Unix ms time.
    private func expireOption(_ c: Client, _ v: Arg, unitMs: Int64, absolute: Bool, command: String) -> Int64? {
        guard var t = intArg(c, v) else { return nil }
        if t <= 0 || (unitMs == 1000 && t > Int64.max / 1000) {
            c.out.error("ERR invalid expire time in '\(command)' command")
            return nil
        }
        t *= unitMs
        if !absolute {
            let now = unixMillis()
            if t > Int64.max - now {
                c.out.error("ERR invalid expire time in '\(command)' command")
                return nil
            }
            t += now
        }
        return t
    }

    func set(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        var nx = false, xx = false, get = false, keepTTL = false
        var expireAt: Int64 = 0
        var optIndex = -1
        var hasExpire: Bool { optIndex >= 0 }
        var j = 3
        while j < n {
            let o = a[j]
            let hasNext = j + 1 < n
            if o.is("nx") && !xx {
                nx = true
            } else if o.is("xx") && !nx {
                xx = true
            } else if o.is("get") {
                get = true
            } else if o.is("keepttl") && !hasExpire {
                keepTTL = true
            } else if hasNext && !keepTTL && !hasExpire && (o.is("ex") || o.is("px") || o.is("exat") || o.is("pxat")) {
                // The value is parsed after all options, as Redis does (a syntax error wins).
                optIndex = j
                j += 1
            } else {
                c.out.error(Err.syntax)
                return
            }
            j += 1
        }
        if hasExpire {
            let o = a[optIndex]
            let unit: Int64 = o.is("ex") || o.is("exat") ? 1000 : 1
            guard let t = expireOption(c, a[optIndex + 1], unitMs: unit, absolute: o.is("exat") || o.is("pxat"), command: "set") else { return }
            expireAt = t
        }
        let i = db.lookup(a[1])
        if get {
            if i >= 0 {
                let p = db.entry(i)
                guard p.pointee.kind == .string else {
                    c.out.error(Err.wrongType)
                    return
                }
                replyString(c, p)
            } else {
                c.out.null()
            }
        }
        if (nx && i >= 0) || (xx && i < 0) {
            if !get { c.out.null() }
            return
        }
        let pos = store(a[1], a[2], at: i, keepTTL: keepTTL)
        if hasExpire { db.setExpire(pos, expireAt) }
        if !get { c.out.ok() }
    }

    func mget(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        c.out.array(n - 1)
        for k in 1..<n {
            let i = db.lookup(a[k], countStats: true)
            if i >= 0 && db.map.values[i].kind == .string { replyString(c, db.entry(i)) } else { c.out.null() }
        }
    }

    func mset(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        if n % 2 == 0 {
            c.out.error("ERR wrong number of arguments for 'mset' command")
            return
        }
        var k = 1
        while k < n {
            store(a[k], a[k + 1], at: db.lookup(a[k]))
            k += 2
        }
        c.out.ok()
    }

    func setnx(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        if db.lookup(a[1]) >= 0 {
            c.out.integer(0)
            return
        }
        store(a[1], a[2], at: -1)
        c.out.integer(1)
    }

    func getdel(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let i = typed(c, a[1], .string) else { return }
        if i < 0 {
            c.out.null()
            return
        }
        replyString(c, db.entry(i))
        db.delete(at: i)
    }

    func getset(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let i = typed(c, a[1], .string) else { return }
        if i < 0 { c.out.null() } else { replyString(c, db.entry(i)) }
        store(a[1], a[2], at: i)
    }

    func getex(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        var persist = false
        var expireAt: Int64 = 0
        var optIndex = -1
        var j = 2
        while j < n {
            let o = a[j]
            let hasNext = j + 1 < n
            if o.is("persist") && optIndex < 0 && !persist {
                persist = true
            } else if hasNext && !persist && optIndex < 0 && (o.is("ex") || o.is("px") || o.is("exat") || o.is("pxat")) {
                optIndex = j
                j += 1
            } else {
                c.out.error(Err.syntax)
                return
            }
            j += 1
        }
        // Redis's order: options, then the key and its type, then the expiry value.
        guard let i = typed(c, a[1], .string) else { return }
        if i < 0 {
            c.out.null()
            return
        }
        if optIndex >= 0 {
            let o = a[optIndex]
            let unit: Int64 = o.is("ex") || o.is("exat") ? 1000 : 1
            guard let t = expireOption(c, a[optIndex + 1], unitMs: unit, absolute: o.is("exat") || o.is("pxat"), command: "getex") else { return }
            expireAt = t
        }
        replyString(c, db.entry(i))
        if optIndex >= 0 {
            if expireAt <= unixMillis() { db.delete(at: i) } else { db.setExpire(i, expireAt) }
        } else if persist {
            db.setExpire(i, 0)
        }
    }

    /// The integer value of a string entry, or nil when it is not one.
    @inline(__always)
    private func integerValue(_ p: UnsafeMutablePointer<Entry>) -> Int64? {
        if p.pointee.isInt { return p.pointee.int }
        let s = p.pointee.str!
        return parseInt64(s.ptr, s.len)
    }

    func incrByCommand(_ c: Client, _ a: UnsafeMutablePointer<Arg>, negate: Bool) {
        guard let v = intArg(c, a[2]) else { return }
        if negate && v == Int64.min {
            c.out.error("ERR decrement would overflow")
            return
        }
        incrBy(c, a[1], negate ? -v : v)
    }

    @inline(__always)
    func incrBy(_ c: Client, _ key: Arg, _ by: Int64) {
        guard let i = typed(c, key, .string) else { return }
        if i < 0 {
            db.add(key, Entry(int: by))
            c.out.integer(by)
            return
        }
        let p = db.entry(i)
        guard let old = integerValue(p) else {
            c.out.error(Err.notInt)
            return
        }
        let (sum, overflow) = old.addingReportingOverflow(by)
        if overflow {
            c.out.error(Err.overflow)
            return
        }
        if p.pointee.isInt {
            p.pointee.int = sum
        } else {
            // Becomes an integer-encoded string; the TTL stays.
            db.replace(at: i, Entry(int: sum), keepTTL: true)
        }
        c.out.integer(sum)
    }

    func incrByFloat(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let i = typed(c, a[1], .string) else { return }
        var old: Float80 = 0
        if i >= 0 {
            let parsed: Float80? = db.map.values[i].withString { parseLongDouble($0) }
            guard let v = parsed else {
                c.out.error(Err.notFloat)
                return
            }
            old = v
        }
        guard let by = parseLongDouble(a[2]) else {
            c.out.error(Err.notFloat)
            return
        }
        let sum = old + by
        if sum.isNaN || sum.isInfinite {
            c.out.error("ERR increment would produce NaN or Infinity")
            return
        }
        let text = formatLongDouble(sum)
        withArg(text) { v in
            if i >= 0 { store(a[1], v, at: i, keepTTL: true) } else { store(a[1], v, at: -1) }
            c.out.bulk(v)
        }
    }

    func append(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let i = typed(c, a[1], .string) else { return }
        if i < 0 {
            store(a[1], a[2], at: -1)
            c.out.integer(a[2].len)
            return
        }
        let combined = db.map.values[i].withString { RBytes(concat: $0, a[2]) }
        let len = combined.len
        db.replace(at: i, Entry(string: combined), keepTTL: true)
        c.out.integer(len)
    }

    func strlen(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let i = typed(c, a[1], .string) else { return }
        c.out.integer(i < 0 ? 0 : db.map.values[i].withString { $0.len })
    }

    func getrange(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard var start = intArg(c, a[2]), var end = intArg(c, a[3]) else { return }
        guard let i = typed(c, a[1], .string) else { return }
        if i < 0 {
            c.out.bulk([UInt8]())
            return
        }
        db.map.values[i].withString { s in
            let len = Int64(s.len)
            if start < 0 && end < 0 && start > end {
                c.out.bulk([UInt8]())
                return
            }
            if start < 0 { start = len + start }
            if end < 0 { end = len + end }
            if start < 0 { start = 0 }
            if end < 0 { end = 0 }
            if end >= len { end = len - 1 }
            if start > end || len == 0 {
                c.out.bulk([UInt8]())
            } else {
                c.out.bulk(s.ptr + Int(start), Int(end - start + 1))
            }
        }
    }
}
