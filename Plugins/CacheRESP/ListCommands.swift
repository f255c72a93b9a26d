/// List commands: LPUSH RPUSH LPOP RPOP LRANGE LLEN LINDEX LREM LTRIM.
extension Engine {
    @inline(__always)
    func listAt(_ c: Client, _ key: Arg, create: Bool) -> (pos: Int, value: ListValue?)? {
        guard let i = typed(c, key, .list) else { return nil }
        if i >= 0 { return (i, db.map.values[i].list) }
        if !create { return (-1, nil) }
        let l = ListValue()
        return (db.add(key, Entry(kind: .list, obj: l)), l)
    }

    func push(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, front: Bool) {
        guard let (i, l) = listAt(c, a[1], create: true), let l else { return }
        for k in 2..<n {
            if front { l.pushFront(RBytes(copying: a[k])) } else { l.pushBack(RBytes(copying: a[k])) }
        }
        let count = l.count
        db.recharge(i)
        c.out.integer(count)
    }

    func pop(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, front: Bool) {
        if n > 3 {
            c.out.error("ERR wrong number of arguments for '\(front ? "lpop" : "rpop")' command")
            return
        }
        var count = -1
        if n == 3 {
            // Redis gives the same message for a non-integer and a negative count.
            guard let v = parseInt64(a[2]), v >= 0 else {
                c.out.error(Err.outOfRangePositive)
                return
            }
            count = Int(min(v, Int64(Int.max)))
        }
        guard let (i, l) = listAt(c, a[1], create: false) else { return }
        guard let l else {
            if count >= 0 { c.out.nullArray() } else { c.out.null() }
            return
        }
        if count < 0 {
            let v = front ? l.popFront() : l.popBack()
            c.out.bulk(v)
            v.free()
        } else if count == 0 {
            c.out.array(0)
            return
        } else {
            let k = min(count, l.count)
            c.out.array(k)
            for _ in 0..<k {
                let v = front ? l.popFront() : l.popBack()
                c.out.bulk(v)
                v.free()
            }
        }
        db.recharge(i)
    }

    /// Redis's index clamping for LRANGE/ZRANGE: nil when the range is empty.
    func clampRange(_ start: Int64, _ stop: Int64, _ len: Int) -> (Int, Int)? {
        var s = start, e = stop
        let n = Int64(len)
        if s < 0 { s += n }
        if e < 0 { e += n }
        if s < 0 { s = 0 }
        if s > e || s >= n { return nil }
        if e >= n { e = n - 1 }
        return (Int(s), Int(e))
    }

    func lrange(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let start = intArg(c, a[2]), let stop = intArg(c, a[3]) else { return }
        guard let (_, l) = listAt(c, a[1], create: false) else { return }
        guard let l, let (s, e) = clampRange(start, stop, l.count) else {
            c.out.array(0)
            return
        }
        c.out.array(e - s + 1)
        for k in s...e { c.out.bulk(l[k]) }
    }

    func llen(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, l) = listAt(c, a[1], create: false) else { return }
        c.out.integer(l?.count ?? 0)
    }

    func lindex(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let idx = intArg(c, a[2]) else { return }
        guard let (_, l) = listAt(c, a[1], create: false) else { return }
        guard let l else {
            c.out.null()
            return
        }
        let k = idx < 0 ? Int64(l.count) + idx : idx
        if k < 0 || k >= Int64(l.count) { c.out.null() } else { c.out.bulk(l[Int(k)]) }
    }

    func lrem(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let count = intArg(c, a[2]) else { return }
        guard let (i, l) = listAt(c, a[1], create: false) else { return }
        guard let l else {
            c.out.integer(0)
            return
        }
        let limit = count > Int64(Int.max / 2) ? Int.max / 2 : (count < -Int64(Int.max / 2) ? -Int.max / 2 : Int(count))
        let removed = l.removeEqual(a[3], limit: limit)
        db.recharge(i)
        c.out.integer(removed)
    }

    func ltrim(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let start = intArg(c, a[2]), let stop = intArg(c, a[3]) else { return }
        guard let (i, l) = listAt(c, a[1], create: false) else { return }
        guard let l else {
            c.out.ok()
            return
        }
        if let (s, e) = clampRange(start, stop, l.count) { l.keep(s, e) } else { l.keep(1, 0) }
        db.recharge(i)
        c.out.ok()
    }
}
