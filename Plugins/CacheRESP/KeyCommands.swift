/// Key commands: DEL UNLINK EXISTS TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL PERSIST
/// KEYS SCAN RENAME.
extension Engine {
    func del(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        var deleted = 0
        for i in 1..<n where db.delete(a[i]) { deleted += 1 }
        c.out.integer(deleted)
    }

    func exists(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        var found = 0
        for i in 1..<n where db.lookup(a[i]) >= 0 { found += 1 }
        c.out.integer(found)
    }

    func type(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        let i = db.lookup(a[1])
        if i < 0 { c.out.simple("none") } else { c.out.simple(db.map.values[i].kind.name) }
    }

    func expire(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, unitMs: Int64, absolute: Bool, name: String) {
        var nx = false, xx = false, gt = false, lt = false
        for j in 3..<max(3, n) {
            let o = a[j]
            if o.is("nx") { nx = true } else if o.is("xx") { xx = true } else if o.is("gt") { gt = true } else if o.is("lt") { lt = true } else {
                c.out.error("ERR Unsupported option \(o.string)")
                return
            }
        }
        if nx && (xx || gt || lt) {
            c.out.error("ERR NX and XX, GT or LT options at the same time are not compatible")
            return
        }
        if gt && lt {
            c.out.error("ERR GT and LT options at the same time are not compatible")
            return
        }
        guard var when = intArg(c, a[2]) else { return }
        let now = unixMillis()
        if unitMs == 1000 {
            if when > Int64.max / 1000 || when < Int64.min / 1000 {
                c.out.error("ERR invalid expire time in '\(name)' command")
                return
            }
            when *= 1000
        }
        let base = absolute ? 0 : now
        if when > Int64.max - base {
            c.out.error("ERR invalid expire time in '\(name)' command")
            return
        }
        when += base
        let i = db.lookup(a[1])
        if i < 0 {
            c.out.integer(0)
            return
        }
        let current = db.map.values[i].expireAt
        if (nx && current != 0) || (xx && current == 0) || (gt && (current == 0 || when <= current)) || (lt && current != 0 && when >= current) {
            c.out.integer(0)
            return
        }
        if when <= now {
            db.delete(at: i)
        } else {
            db.setExpire(i, when)
        }
        c.out.integer(1)
    }

    func ttl(_ c: Client, _ a: UnsafeMutablePointer<Arg>, ms: Bool) {
        let i = db.lookup(a[1])
        if i < 0 {
            c.out.integer(-2)
            return
        }
        let e = db.map.values[i].expireAt
        if e == 0 {
            c.out.integer(-1)
            return
        }
        let left = max(0, e - unixMillis())
        c.out.integer(ms ? left : (left + 500) / 1000)
    }

    func persist(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        let i = db.lookup(a[1])
        if i < 0 || db.map.values[i].expireAt == 0 {
            c.out.integer(0)
            return
        }
        db.setExpire(i, 0)
        c.out.integer(1)
    }

    /// Live positions whose key matches `pattern` (nil = all), deleting expired keys met.
    private func matchingKeys(from: Int, limit: Int, pattern: Arg?, type: Arg?) -> (keys: [Int], next: Int) {
        var out: [Int] = []
        var i = from
        var visited = 0
        let now = unixMillis()
        while i < db.map.top && visited < limit {
            if db.map.isLive(i) {
                visited += 1
                let e = db.map.values[i]
                if e.expireAt != 0 && e.expireAt <= now {
                    db.delete(at: i)
                    db.expiredKeys += 1
                } else if (pattern.map { globMatch($0, db.map.keys[i].arg, noCase: false) } ?? true)
                    && (type.map { $0.is(e.kind.name) } ?? true)
                {
                    out.append(i)
                }
            }
            i += 1
        }
        return (out, i >= db.map.top ? 0 : i)
    }

    func keys(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        let all = a[1].len == 1 && a[1][0] == 42
        let (found, _) = matchingKeys(from: 0, limit: Int.max, pattern: all ? nil : a[1], type: nil)
        c.out.array(found.count)
        for i in found { c.out.bulk(db.map.keys[i]) }
    }

    func scan(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard a[1].len > 0, a[1].len <= 20, let cursor = UInt64(a[1].string) else {
            c.out.error("ERR invalid cursor")
            return
        }
        var count = 10
        var pattern: Arg?
        var type: Arg?
        var i = 2
        while i < n {
            let left = n - i
            if a[i].is("count") && left >= 2 {
                guard let v = intArg(c, a[i + 1]) else { return }
                if v < 1 {
                    c.out.error(Err.syntax)
                    return
                }
                count = Int(min(v, 1 << 30))
                i += 2
            } else if a[i].is("match") && left >= 2 {
                pattern = a[i + 1].len == 1 && a[i + 1][0] == 42 ? nil : a[i + 1]
                i += 2
            } else if a[i].is("type") && left >= 2 {
                type = a[i + 1]
                i += 2
            } else {
                c.out.error(Err.syntax)
                return
            }
        }
        let start = cursor > UInt64(Int.max) ? Int.max : Int(cursor)
        let (found, next) = matchingKeys(from: start, limit: count, pattern: pattern, type: type)
        c.out.array(2)
        c.out.bulk(int64Bytes(Int64(next)))
        c.out.array(found.count)
        for k in found { c.out.bulk(db.map.keys[k]) }
    }

    func rename(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        let src = db.lookup(a[1])
        if src < 0 {
            c.out.error(Err.noSuchKey)
            return
        }
        if a[1].equals(a[2]) {
            c.out.ok()
            return
        }
        let expireAt = db.map.values[src].expireAt
        let e = db.take(at: src)
        _ = db.delete(a[2])
        let dst = db.add(a[2], e)
        if expireAt != 0 { db.setExpire(dst, expireAt) }
        c.out.ok()
    }
}
