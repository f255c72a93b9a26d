/// Hash commands: HSET HMSET HGET HMGET HDEL HGETALL HKEYS HVALS HLEN HEXISTS HINCRBY.
extension Engine {
    /// The hash at `key`, created when absent (`create`); nil after a WRONGTYPE reply,
    /// or when absent and not created (then `pos` is -1).
    @inline(__always)
    func hashAt(_ c: Client, _ key: Arg, create: Bool) -> (pos: Int, value: HashValue?)? {
        guard let i = typed(c, key, .hash) else { return nil }
        if i >= 0 { return (i, db.map.values[i].hash) }
        if !create { return (-1, nil) }
        let h = HashValue()
        return (db.add(key, Entry(kind: .hash, obj: h)), h)
    }

    func hset(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, legacy: Bool) {
        if n % 2 == 1 {
            c.out.error("ERR wrong number of arguments for '\(legacy ? "hmset" : "hset")' command")
            return
        }
        guard let (i, h) = hashAt(c, a[1], create: true), let h else { return }
        var added = 0
        var k = 2
        while k < n {
            if h.set(a[k], a[k + 1]) { added += 1 }
            k += 2
        }
        db.recharge(i)
        if legacy { c.out.ok() } else { c.out.integer(added) }
    }

    func hget(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, h) = hashAt(c, a[1], create: false) else { return }
        if let v = h?.get(a[2]) { c.out.bulk(v) } else { c.out.null() }
    }

    func hmget(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard let (_, h) = hashAt(c, a[1], create: false) else { return }
        c.out.array(n - 2)
        for k in 2..<n {
            if let v = h?.get(a[k]) { c.out.bulk(v) } else { c.out.null() }
        }
    }

    func hdel(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard let (i, h) = hashAt(c, a[1], create: false) else { return }
        guard let h else {
            c.out.integer(0)
            return
        }
        var removed = 0
        for k in 2..<n where h.delete(a[k]) { removed += 1 }
        db.recharge(i)
        c.out.integer(removed)
    }

    func hgetall(_ c: Client, _ a: UnsafeMutablePointer<Arg>, keys: Bool, values: Bool) {
        guard let (_, h) = hashAt(c, a[1], create: false) else { return }
        guard let h else {
            if keys && values { c.out.map(0) } else { c.out.array(0) }
            return
        }
        if keys && values { c.out.map(h.map.count) } else { c.out.array(h.map.count) }
        for i in 0..<h.map.top where h.map.isLive(i) {
            if keys { c.out.bulk(h.map.keys[i]) }
            if values { c.out.bulk(h.map.values[i]) }
        }
    }

    func hlen(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, h) = hashAt(c, a[1], create: false) else { return }
        c.out.integer(h?.map.count ?? 0)
    }

    func hexists(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, h) = hashAt(c, a[1], create: false) else { return }
        c.out.integer(h?.get(a[2]) != nil ? 1 : 0)
    }

    func hincrby(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let by = intArg(c, a[3]) else { return }
        guard let (i, h) = hashAt(c, a[1], create: true), let h else { return }
        var old: Int64 = 0
        if let v = h.get(a[2]) {
            guard let parsed = parseInt64(v.ptr, v.len) else {
                db.recharge(i)
                c.out.error("ERR hash value is not an integer")
                return
            }
            old = parsed
        }
        let (sum, overflow) = old.addingReportingOverflow(by)
        if overflow {
            db.recharge(i)
            c.out.error(Err.overflow)
            return
        }
        withArg(int64Bytes(sum)) { _ = h.set(a[2], $0) }
        db.recharge(i)
        c.out.integer(sum)
    }
}
