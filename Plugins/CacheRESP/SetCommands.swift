/// Set commands: SADD SREM SMEMBERS SISMEMBER SCARD SINTER SUNION.
extension Engine {
    @inline(__always)
    func setAt(_ c: Client, _ key: Arg, create: Bool) -> (pos: Int, value: SetValue?)? {
        guard let i = typed(c, key, .set) else { return nil }
        if i >= 0 { return (i, db.map.values[i].set) }
        if !create { return (-1, nil) }
        let s = SetValue()
        return (db.add(key, Entry(kind: .set, obj: s)), s)
    }

    func sadd(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard let (i, s) = setAt(c, a[1], create: true), let s else { return }
        var added = 0
        for k in 2..<n where s.add(a[k]) { added += 1 }
        db.recharge(i)
        c.out.integer(added)
    }

    func srem(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard let (i, s) = setAt(c, a[1], create: false) else { return }
        guard let s else {
            c.out.integer(0)
            return
        }
        var removed = 0
        for k in 2..<n where s.remove(a[k]) { removed += 1 }
        db.recharge(i)
        c.out.integer(removed)
    }

    func smembers(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, s) = setAt(c, a[1], create: false) else { return }
        guard let s else {
            c.out.set(0)
            return
        }
        c.out.set(s.map.count)
        s.forEach { c.out.bulk($0) }
    }

    func sismember(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, s) = setAt(c, a[1], create: false) else { return }
        c.out.integer(s?.contains(a[2]) == true ? 1 : 0)
    }

    func scard(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, s) = setAt(c, a[1], create: false) else { return }
        c.out.integer(s?.map.count ?? 0)
    }

    func sinterUnion(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, union: Bool) {
        var sets: [SetValue?] = []
        for k in 1..<n {
            guard let (_, s) = setAt(c, a[k], create: false) else { return }
            sets.append(s)
        }
        var result: [[UInt8]] = []
        if union {
            var seen = Set<[UInt8]>()
            for s in sets {
                s?.forEach { m in
                    let b = m.array
                    if seen.insert(b).inserted { result.append(b) }
                }
            }
        } else if !sets.contains(where: { $0 == nil }) {
            // Walk the smallest set, probe the others.
            let all = sets.map { $0! }
            let smallest = all.min { $0.map.count < $1.map.count }!
            smallest.forEach { m in
                if all.allSatisfy({ $0 === smallest || $0.contains(m) }) { result.append(m.array) }
            }
        }
        c.out.set(result.count)
        for m in result { c.out.bulk(m) }
    }
}
