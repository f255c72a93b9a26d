/// Channel and pattern subscriptions. Owned by the event-loop thread.
final class PubSub {
    var channels: [[UInt8]: [ObjectIdentifier: Client]] = [:]
    var patterns: [[UInt8]: [ObjectIdentifier: Client]] = [:]

    func remove(_ c: Client) {
        for ch in c.channels { drop(&channels, ch, c) }
        for p in c.patterns { drop(&patterns, p, c) }
        c.channels.removeAll()
        c.patterns.removeAll()
    }

    func drop(_ table: inout [[UInt8]: [ObjectIdentifier: Client]], _ key: [UInt8], _ c: Client) {
        table[key]?.removeValue(forKey: ObjectIdentifier(c))
        if table[key]?.isEmpty == true { table.removeValue(forKey: key) }
    }
}

extension Engine {
    func subscribe(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, pattern: Bool) {
        for i in 1..<n {
            let key = a[i].array
            if pattern {
                if c.patterns.insert(key).inserted { pubsub.patterns[key, default: [:]][ObjectIdentifier(c)] = c }
            } else {
                if c.channels.insert(key).inserted { pubsub.channels[key, default: [:]][ObjectIdentifier(c)] = c }
            }
            c.out.push(3)
            c.out.bulk(pattern ? "psubscribe" : "subscribe")
            c.out.bulk(a[i])
            c.out.integer(c.subscriptionCount)
        }
    }

    func unsubscribe(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int, pattern: Bool) {
        let kind = pattern ? "punsubscribe" : "unsubscribe"
        var targets: [[UInt8]] = []
        if n > 1 {
            for i in 1..<n { targets.append(a[i].array) }
        } else {
            targets = Array(pattern ? c.patterns : c.channels)
            if targets.isEmpty {
                c.out.push(3)
                c.out.bulk(kind)
                c.out.null()
                c.out.integer(c.subscriptionCount)
                return
            }
        }
        for key in targets {
            if pattern {
                if c.patterns.remove(key) != nil { pubsub.drop(&pubsub.patterns, key, c) }
            } else {
                if c.channels.remove(key) != nil { pubsub.drop(&pubsub.channels, key, c) }
            }
            c.out.push(3)
            c.out.bulk(kind)
            c.out.bulk(key)
            c.out.integer(c.subscriptionCount)
        }
    }

    /// Delivers a message to channel and pattern subscribers; returns how many received it.
    @discardableResult
    func publish(_ channel: Arg, _ message: Arg) -> Int {
        var receivers = 0
        let key = channel.array
        if let subs = pubsub.channels[key] {
            for c in subs.values {
                c.out.push(3)
                c.out.bulk("message")
                c.out.bulk(channel)
                c.out.bulk(message)
                receivers += 1
                wakeForWrite?(c)
            }
        }
        for (p, subs) in pubsub.patterns {
            let matches = withArg(p) { globMatch($0, channel, noCase: false) }
            guard matches else { continue }
            for c in subs.values {
                c.out.push(4)
                c.out.bulk("pmessage")
                c.out.bulk(p)
                c.out.bulk(channel)
                c.out.bulk(message)
                receivers += 1
                wakeForWrite?(c)
            }
        }
        onPublish?(channel, message)
        return receivers
    }

    func pubsubCommand(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        let sub = a[1]
        if sub.is("channels") && (n == 2 || n == 3) {
            let names = pubsub.channels.keys.filter { ch in
                n == 2 || withArg(ch) { chArg in globMatch(a[2], chArg, noCase: false) }
            }
            c.out.array(names.count)
            for ch in names { c.out.bulk(ch) }
        } else if sub.is("numsub") {
            c.out.array(2 * (n - 2)) // a flat array in RESP3 too, as Redis 7.0
            for i in 2..<max(2, n) {
                c.out.bulk(a[i])
                c.out.integer(pubsub.channels[a[i].array]?.count ?? 0)
            }
        } else if sub.is("numpat") && n == 2 {
            c.out.integer(pubsub.patterns.count)
        } else {
            c.out.error("ERR unknown subcommand or wrong number of arguments for '\(sub.string)'. Try PUBSUB HELP.")
        }
    }
}

/// Redis's glob matching (`stringmatchlen`): `*`, `?`, `[...]` with ranges and `^`
/// negation, and `\` escapes. Every element but `*` matches exactly one byte, so on a
/// mismatch only the newest `*` needs to take one more byte: at most pattern × string
/// steps. (Recursing at every `*` was exponential in the stars: a 22-byte KEYS pattern
/// held the cache thread for minutes, Redis's CVE-2022-36021.)
func globMatch(_ pattern: Arg, _ string: Arg, noCase: Bool) -> Bool {
    let pl = pattern.len, sl = string.len
    var p = 0, s = 0
    // The newest `*`: its place in the pattern and the first byte it has not taken yet.
    var star = -1, starTaken = 0
    while s < sl {
        if p < pl && pattern[p] == 42 {
            while p + 1 < pl && pattern[p + 1] == 42 { p += 1 }
            star = p
            starTaken = s
            p += 1
            continue
        }
        if p < pl, let next = globElement(pattern, at: p, matches: string[s], noCase: noCase) {
            p = next
            s += 1
            continue
        }
        guard star >= 0 else { return false }
        starTaken += 1
        s = starTaken
        p = star + 1
    }
    while p < pl && pattern[p] == 42 { p += 1 }
    return p == pl
}

/// Whether the pattern element at `p` (not `*`) matches the byte `ch`: the index after the
/// element when it does, nil when not.
private func globElement(_ pattern: Arg, at start: Int, matches ch: UInt8, noCase: Bool) -> Int? {
    func fold(_ c: UInt8) -> UInt8 { noCase && c >= 65 && c <= 90 ? c | 0x20 : c }
    let pl = pattern.len
    var p = start
    switch pattern[p] {
    case 63: // '?'
        return p + 1
    case 91: // '['
        p += 1
        let not = p < pl && pattern[p] == 94
        if not { p += 1 }
        var matched = false
        while true {
            if p >= pl {
                // Unterminated: the class ends with the pattern.
                p -= 1
                break
            } else if pattern[p] == 92 && p + 1 < pl {
                p += 1
                if fold(pattern[p]) == fold(ch) { matched = true }
            } else if pattern[p] == 93 {
                break
            } else if p + 2 < pl && pattern[p + 1] == 45 {
                var lo = fold(pattern[p]), hi = fold(pattern[p + 2])
                if lo > hi { swap(&lo, &hi) }
                if fold(ch) >= lo && fold(ch) <= hi { matched = true }
                p += 2
            } else if fold(pattern[p]) == fold(ch) {
                matched = true
            }
            p += 1
        }
        return matched != not ? p + 1 : nil
    case 92: // '\'
        if p + 1 < pl { p += 1 }
        return fold(pattern[p]) == fold(ch) ? p + 1 : nil
    default:
        return fold(pattern[p]) == fold(ch) ? p + 1 : nil
    }
}
