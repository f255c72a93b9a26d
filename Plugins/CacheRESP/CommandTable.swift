/// Every command the server knows. The raw value indexes `CommandTable.specs`.
enum Cmd: Int, CaseIterable {
    // connection and server
    case ping, echo, hello, auth, select, client, quit, command, info, dbsize, flushdb, flushall, reset
    // keys
    case del, unlink, exists, type, expire, pexpire, expireat, pexpireat, ttl, pttl, persist, keys, scan, rename
    // strings
    case get, set, mget, mset, setnx, getdel, getex, getset, incr, incrby, incrbyfloat, decr, decrby, append, strlen, getrange
    // hashes
    case hset, hmset, hget, hmget, hdel, hgetall, hkeys, hvals, hlen, hexists, hincrby
    // lists
    case lpush, rpush, lpop, rpop, lrange, llen, lindex, lrem, ltrim
    // sets
    case sadd, srem, smembers, sismember, scard, sinter, sunion
    // sorted sets
    case zadd, zrem, zscore, zincrby, zcard, zrange, zrangebyscore, zrevrange, zrank
    // pub/sub
    case subscribe, unsubscribe, psubscribe, punsubscribe, publish, pubsub
    // transactions
    case multi, exec, discard
    // only through the host interface (HTTP `CLEANUP`)
    case pylonCleanup
}

/// What the dispatcher needs to know about a command before running it.
struct CommandSpec {
    /// Lower-case name, as error messages spell it.
    let name: String
    /// Redis arity: n > 0 exactly n arguments (with the name), n < 0 at least -n.
    let arity: Int
    /// May grow memory (refused with OOM when over `maxmemory` and nothing can be evicted).
    var denyOOM = false
    /// Allowed before AUTH when a password is set.
    var noAuth = false
    /// Allowed in RESP2 subscribed mode.
    var pubsubContext = false
    /// Run at once inside MULTI instead of being queued.
    var notQueued = false
    /// Writes the keyspace (counted, and what snapshots care about).
    var write = false
    /// Not available over RESP (host calls only).
    var internalOnly = false
    /// Not available through the host interface (needs a connection).
    var connectionOnly = false
    /// Group shown by COMMAND DOCS.
    var group = "generic"
}

/// The per-command facts the dispatcher checks on every call, as plain values (copying a
/// `CommandSpec` would retain its strings on the hot path).
struct CommandRule {
    var arity: Int32
    var bits: UInt16

    static let denyOOM: UInt16 = 1, noAuth: UInt16 = 2, pubsubContext: UInt16 = 4, notQueued: UInt16 = 8
    static let write: UInt16 = 16, internalOnly: UInt16 = 32, connectionOnly: UInt16 = 64, subcommands: UInt16 = 128

    @inline(__always) func has(_ b: UInt16) -> Bool { bits & b != 0 }
}

/// Command lookup by name without allocating: an open-addressing table over the
/// case-folded name bytes.
struct CommandTable {
    let specs: [CommandSpec]
    let rules: [CommandRule]
    private var slots: [Int16]
    /// All names back to back (lower case); command i is `nameLength[i]` bytes at `nameStart[i]`.
    private let nameBytes: [UInt8]
    private let nameStart: [Int]
    private let nameLength: [Int]
    private static let size = 512

    init() {
        func s(_ c: Cmd, _ arity: Int, _ group: String, write: Bool = false, oom: Bool = false, noAuth: Bool = false,
               pubsub: Bool = false, notQueued: Bool = false, hostOnly: Bool = false, conn: Bool = false) -> CommandSpec {
            let raw = "\(c)".lowercased()
            return CommandSpec(name: c == .pylonCleanup ? "pylon.cleanup" : raw, arity: arity, denyOOM: oom, noAuth: noAuth,
                               pubsubContext: pubsub, notQueued: notQueued, write: write, internalOnly: hostOnly,
                               connectionOnly: conn, group: group)
        }
        var list: [CommandSpec] = []
        for c in Cmd.allCases {
            let spec: CommandSpec
            switch c {
            case .ping: spec = s(c, -1, "connection", pubsub: true)
            case .echo: spec = s(c, 2, "connection")
            case .hello: spec = s(c, -1, "connection", noAuth: true, conn: true)
            case .auth: spec = s(c, -2, "connection", noAuth: true, conn: true)
            case .select: spec = s(c, 2, "connection")
            case .client: spec = s(c, -2, "connection", conn: true)
            case .quit: spec = s(c, -1, "connection", noAuth: true, pubsub: true, notQueued: true, conn: true)
            case .reset: spec = s(c, 1, "connection", noAuth: true, pubsub: true, notQueued: true, conn: true)
            case .command: spec = s(c, -1, "server")
            case .info: spec = s(c, -1, "server")
            case .dbsize: spec = s(c, 1, "server")
            case .flushdb: spec = s(c, -1, "server", write: true)
            case .flushall: spec = s(c, -1, "server", write: true)
            case .del: spec = s(c, -2, "generic", write: true)
            case .unlink: spec = s(c, -2, "generic", write: true)
            case .exists: spec = s(c, -2, "generic")
            case .type: spec = s(c, 2, "generic")
            case .expire: spec = s(c, -3, "generic", write: true)
            case .pexpire: spec = s(c, -3, "generic", write: true)
            case .expireat: spec = s(c, -3, "generic", write: true)
            case .pexpireat: spec = s(c, -3, "generic", write: true)
            case .ttl: spec = s(c, 2, "generic")
            case .pttl: spec = s(c, 2, "generic")
            case .persist: spec = s(c, 2, "generic", write: true)
            case .keys: spec = s(c, 2, "generic")
            case .scan: spec = s(c, -2, "generic")
            case .rename: spec = s(c, 3, "generic", write: true)
            case .get: spec = s(c, 2, "string")
            case .set: spec = s(c, -3, "string", write: true, oom: true)
            case .mget: spec = s(c, -2, "string")
            case .mset: spec = s(c, -3, "string", write: true, oom: true)
            case .setnx: spec = s(c, 3, "string", write: true, oom: true)
            case .getdel: spec = s(c, 2, "string", write: true)
            case .getex: spec = s(c, -2, "string", write: true)
            case .getset: spec = s(c, 3, "string", write: true, oom: true)
            case .incr, .decr: spec = s(c, 2, "string", write: true, oom: true)
            case .incrby, .decrby, .incrbyfloat: spec = s(c, 3, "string", write: true, oom: true)
            case .append: spec = s(c, 3, "string", write: true, oom: true)
            case .strlen: spec = s(c, 2, "string")
            case .getrange: spec = s(c, 4, "string")
            case .hset, .hmset: spec = s(c, -4, "hash", write: true, oom: true)
            case .hget: spec = s(c, 3, "hash")
            case .hmget: spec = s(c, -3, "hash")
            case .hdel: spec = s(c, -3, "hash", write: true)
            case .hgetall, .hkeys, .hvals, .hlen: spec = s(c, 2, "hash")
            case .hexists: spec = s(c, 3, "hash")
            case .hincrby: spec = s(c, 4, "hash", write: true, oom: true)
            case .lpush, .rpush: spec = s(c, -3, "list", write: true, oom: true)
            case .lpop, .rpop: spec = s(c, -2, "list", write: true)
            case .lrange: spec = s(c, 4, "list")
            case .llen: spec = s(c, 2, "list")
            case .lindex: spec = s(c, 3, "list")
            case .lrem: spec = s(c, 4, "list", write: true)
            case .ltrim: spec = s(c, 4, "list", write: true)
            case .sadd: spec = s(c, -3, "set", write: true, oom: true)
            case .srem: spec = s(c, -3, "set", write: true)
            case .smembers, .scard: spec = s(c, 2, "set")
            case .sismember: spec = s(c, 3, "set")
            case .sinter, .sunion: spec = s(c, -2, "set")
            case .zadd: spec = s(c, -4, "sorted-set", write: true, oom: true)
            case .zrem: spec = s(c, -3, "sorted-set", write: true)
            case .zscore: spec = s(c, 3, "sorted-set")
            case .zincrby: spec = s(c, 4, "sorted-set", write: true, oom: true)
            case .zcard: spec = s(c, 2, "sorted-set")
            case .zrange, .zrangebyscore, .zrevrange: spec = s(c, -4, "sorted-set")
            case .zrank: spec = s(c, 3, "sorted-set")
            case .subscribe, .psubscribe: spec = s(c, -2, "pubsub", pubsub: true, conn: true)
            case .unsubscribe, .punsubscribe: spec = s(c, -1, "pubsub", pubsub: true, conn: true)
            case .publish: spec = s(c, 3, "pubsub")
            case .pubsub: spec = s(c, -2, "pubsub")
            case .multi: spec = s(c, 1, "transactions", notQueued: true, conn: true)
            case .exec: spec = s(c, 1, "transactions", notQueued: true, conn: true)
            case .discard: spec = s(c, 1, "transactions", notQueued: true, conn: true)
            case .pylonCleanup: spec = s(c, 1, "server", write: true, hostOnly: true)
            }
            list.append(spec)
        }
        specs = list
        rules = list.enumerated().map { i, s in
            var b: UInt16 = 0
            if s.denyOOM { b |= CommandRule.denyOOM }
            if s.noAuth { b |= CommandRule.noAuth }
            if s.pubsubContext { b |= CommandRule.pubsubContext }
            if s.notQueued { b |= CommandRule.notQueued }
            if s.write { b |= CommandRule.write }
            if s.internalOnly { b |= CommandRule.internalOnly }
            if s.connectionOnly { b |= CommandRule.connectionOnly }
            if Self.subcommands[Cmd(rawValue: i)!] != nil { b |= CommandRule.subcommands }
            return CommandRule(arity: Int32(s.arity), bits: b)
        }
        let names = list.map { Array($0.name.utf8) }
        nameBytes = names.flatMap { $0 }
        nameLength = names.map(\.count)
        var start = 0
        var starts: [Int] = []
        for n in names {
            starts.append(start)
            start += n.count
        }
        nameStart = starts
        slots = [Int16](repeating: -1, count: Self.size)
        for (i, n) in names.enumerated() {
            var s = n.withUnsafeBufferPointer { Self.foldedHash($0.baseAddress!, $0.count) } & (Self.size - 1)
            while slots[s] >= 0 { s = (s + 1) & (Self.size - 1) }
            slots[s] = Int16(i)
        }
    }

    @inline(__always)
    private static func foldedHash(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var h: UInt32 = 2_166_136_261
        for i in 0..<n {
            h = (h ^ UInt32(p[i] | 0x20)) &* 16_777_619
        }
        return Int(h ^ (h >> 15))
    }

    /// Container commands' subcommands and their arities (Redis 7 looks these up with the
    /// command, so an unknown one is rejected before a MULTI queues it).
    static let subcommands: [Cmd: [String: Int]] = [
        .client: ["id": 2, "setname": 3, "getname": 2, "setinfo": 4, "info": 2, "list": -2, "help": 2],
        .command: ["count": 2, "list": -2, "info": -2, "docs": -2, "help": 2],
        .pubsub: ["channels": -2, "numsub": -2, "numpat": 2, "help": 2],
    ]

    /// An error for an unknown subcommand or a wrong subcommand arity, or nil.
    func checkSubcommand(_ cmd: Cmd, _ argv: UnsafeMutablePointer<Arg>, _ argc: Int) -> String? {
        guard let subs = Self.subcommands[cmd], argc >= 2 else { return nil }
        let name = argv[1].string.lowercased()
        let container = specs[cmd.rawValue].name
        guard let arity = subs[name] else {
            return "ERR unknown subcommand '\(argv[1].string.prefix(128))'. Try \(container.uppercased()) HELP."
        }
        if (arity > 0 && argc != arity) || argc < -arity {
            return "ERR wrong number of arguments for '\(container)|\(name)' command"
        }
        return nil
    }

    /// The command named by `a` (any case), or nil.
    @inline(__always)
    func lookup(_ a: Arg) -> Cmd? {
        if a.len == 0 || a.len > 16 { return nil }
        var s = Self.foldedHash(a.ptr, a.len) & (Self.size - 1)
        while true {
            let i = Int(slots[s])
            if i < 0 { return nil }
            if nameLength[i] == a.len {
                let base = nameStart[i]
                var same = true
                for j in 0..<a.len where nameBytes[base + j] != (a.ptr[j] >= 65 && a.ptr[j] <= 90 ? a.ptr[j] | 0x20 : a.ptr[j]) {
                    same = false
                    break
                }
                if same { return Cmd(rawValue: i) }
            }
            s = (s + 1) & (Self.size - 1)
        }
    }
}
