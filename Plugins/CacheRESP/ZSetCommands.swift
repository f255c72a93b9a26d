#if canImport(Glibc)
import Glibc
#endif

/// Sorted-set commands: ZADD ZINCRBY ZREM ZSCORE ZCARD ZRANGE ZRANGEBYSCORE ZREVRANGE ZRANK.
extension Engine {
    @inline(__always)
    func zsetAt(_ c: Client, _ key: Arg, create: Bool) -> (pos: Int, value: ZSetValue?)? {
        guard let i = typed(c, key, .zset) else { return nil }
        if i >= 0 { return (i, db.map.values[i].zset) }
        if !create { return (-1, nil) }
        let z = ZSetValue()
        return (db.add(key, Entry(kind: .zset, obj: z)), z)
    }

    /// ZADD (and ZINCRBY as `ZADD key INCR increment member`).
    func zadd(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, scoreIndex: Int, incrOnly: Bool) {
        var nx = false, xx = false, gt = false, lt = false, ch = false, incr = incrOnly
        var idx = scoreIndex
        if !incrOnly {
            while idx < n {
                let o = a[idx]
                if o.is("nx") { nx = true } else if o.is("xx") { xx = true } else if o.is("ch") { ch = true }
                else if o.is("incr") { incr = true } else if o.is("gt") { gt = true } else if o.is("lt") { lt = true }
                else { break }
                idx += 1
            }
        }
        let elements = n - idx
        if elements == 0 || elements % 2 != 0 {
            c.out.error(Err.syntax)
            return
        }
        if nx && xx {
            c.out.error("ERR XX and NX options at the same time are not compatible")
            return
        }
        if (gt && nx) || (lt && nx) || (gt && lt) {
            c.out.error("ERR GT, LT, and/or NX options at the same time are not compatible")
            return
        }
        if incr && elements > 2 {
            c.out.error("ERR INCR option supports a single increment-element pair")
            return
        }
        var scores: [Double] = []
        var k = idx
        while k < n {
            guard let s = parseDouble(a[k]) else {
                c.out.error(Err.notFloat)
                return
            }
            scores.append(s)
            k += 2
        }
        guard let (found, existing) = zsetAt(c, a[1], create: false) else { return }
        var pos = found
        var z: ZSetValue
        if let existing {
            z = existing
        } else {
            if xx {
                if incr { c.out.null() } else { c.out.integer(0) }
                return
            }
            let made = ZSetValue()
            pos = db.add(a[1], Entry(kind: .zset, obj: made))
            z = made
        }
        var added = 0, updated = 0, processed = 0
        var lastScore = 0.0
        for (e, s) in scores.enumerated() {
            let member = a[idx + 2 * e + 1]
            if let cur = z.score(member) {
                if nx { continue }
                var new = s
                if incr {
                    new = cur + s
                    if new.isNaN {
                        db.recharge(pos)
                        c.out.error("ERR resulting score is not a number (NaN)")
                        return
                    }
                }
                if (gt && new <= cur) || (lt && new >= cur) { continue }
                lastScore = new
                processed += 1
                if new != cur {
                    z.set(member, new)
                    updated += 1
                }
            } else {
                if xx { continue }
                if s.isNaN {
                    db.recharge(pos)
                    c.out.error("ERR resulting score is not a number (NaN)")
                    return
                }
                z.set(member, s)
                lastScore = s
                added += 1
                processed += 1
            }
        }
        db.recharge(pos)
        if incr {
            if processed > 0 { c.out.double(lastScore) } else { c.out.null() }
        } else {
            c.out.integer(ch ? added + updated : added)
        }
    }

    func zrem(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        guard let (i, z) = zsetAt(c, a[1], create: false) else { return }
        guard let z else {
            c.out.integer(0)
            return
        }
        var removed = 0
        for k in 2..<n where z.remove(a[k]) { removed += 1 }
        db.recharge(i)
        c.out.integer(removed)
    }

    func zscore(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, z) = zsetAt(c, a[1], create: false) else { return }
        if let s = z?.score(a[2]) { c.out.double(s) } else { c.out.null() }
    }

    func zcard(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, z) = zsetAt(c, a[1], create: false) else { return }
        c.out.integer(z?.count ?? 0)
    }

    func zrank(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let (_, z) = zsetAt(c, a[1], create: false) else { return }
        if let r = z?.rank(a[2]) { c.out.integer(r) } else { c.out.null() }
    }

    private enum RangeType { case auto, rank, score }

    func zrange(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        zrangeGeneric(c, a, n, rangeType: .auto, reverse: nil)
    }

    func zrangeByScore(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        zrangeGeneric(c, a, n, rangeType: .score, reverse: false)
    }

    func zrevrange(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        zrangeGeneric(c, a, n, rangeType: .rank, reverse: true)
    }

    /// A score bound: "(x" exclusive, "-inf"/"+inf". Parsed with plain `strtod` over the
    /// whole string, as Redis's `zslParseRange` does (so "" and "(" mean 0, " 1" is 1).
    private func parseBound(_ a: Arg) -> (Double, Bool)? {
        let exclusive = a.len > 0 && a[0] == 40
        let body = exclusive ? Arg(ptr: a.ptr + 1, len: a.len - 1) : a
        var text = [CChar](repeating: 0, count: body.len + 1)
        for i in 0..<body.len {
            if body[i] == 0 { return nil }
            text[i] = CChar(bitPattern: body[i])
        }
        return text.withUnsafeBufferPointer { t -> (Double, Bool)? in
            var end: UnsafeMutablePointer<CChar>?
            let v = strtod(t.baseAddress!, &end)
            guard let end, end.pointee == 0, !v.isNaN else { return nil }
            return (v, exclusive)
        }
    }

    private func zrangeGeneric(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, rangeType initial: RangeType, reverse initialReverse: Bool?) {
        var withScores = false
        var offset = 0, limit = -1
        var reverse = initialReverse
        var type = initial
        var j = 4
        while j < n {
            let left = n - j - 1
            let o = a[j]
            if o.is("withscores") {
                withScores = true
            } else if o.is("limit") && left >= 2 {
                guard let off = intArg(c, a[j + 1]), let lim = intArg(c, a[j + 2]) else { return }
                offset = Int(clamping: off)
                limit = Int(clamping: lim)
                j += 2
            } else if reverse == nil && o.is("rev") {
                reverse = true
            } else if type == .auto && o.is("byscore") {
                type = .score
            } else {
                c.out.error(Err.syntax)
                return
            }
            j += 1
        }
        let rev = reverse ?? false
        if type == .auto { type = .rank }
        if limit != -1 && type == .rank {
            c.out.error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
            return
        }
        var minArg = a[2], maxArg = a[3]
        if rev && type == .score { swap(&minArg, &maxArg) }
        var ranks: [Int] = []
        if type == .rank {
            guard let start = intArg(c, a[2]), let stop = intArg(c, a[3]) else { return }
            guard let (_, z) = zsetAt(c, a[1], create: false) else { return }
            guard let z else {
                c.out.array(0)
                return
            }
            if let (s, e) = clampRange(start, stop, z.count) {
                ranks = rev ? (s...e).map { z.count - 1 - $0 } : Array(s...e)
            }
            emitRange(c, z, ranks, withScores)
            return
        }
        guard let (lo, loEx) = parseBound(minArg), let (hi, hiEx) = parseBound(maxArg) else {
            c.out.error(Err.minMaxNotFloat)
            return
        }
        guard let (_, z) = zsetAt(c, a[1], create: false) else { return }
        guard let z else {
            c.out.array(0)
            return
        }
        let first = z.firstRank(above: lo, exclusive: loEx)
        let last = z.lastRank(below: hi, exclusive: hiEx)
        if first <= last && offset >= 0 && limit != 0 {
            var all = Array(first...last)
            if rev { all.reverse() }
            if offset < all.count {
                // Compared before adding: a client's LIMIT may be Int.max (no overflow trap).
                let end = limit < 0 || limit >= all.count - offset ? all.count : offset + limit
                ranks = Array(all[offset..<end])
            }
        }
        emitRange(c, z, ranks, withScores)
    }

    private func emitRange(_ c: Client, _ z: ZSetValue, _ ranks: [Int], _ withScores: Bool) {
        if withScores && c.out.resp == 2 {
            c.out.array(ranks.count * 2)
        } else {
            c.out.array(ranks.count)
        }
        for r in ranks {
            if withScores {
                if c.out.resp == 3 { c.out.array(2) }
                c.out.bulk(z.member(at: r))
                c.out.double(z.score(at: r))
            } else {
                c.out.bulk(z.member(at: r))
            }
        }
    }
}
