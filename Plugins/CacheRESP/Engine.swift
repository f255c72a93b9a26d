#if canImport(Glibc)
import Glibc
#endif

/// Redis's error replies, verbatim (clients and the differential test compare them).
enum Err {
    static let wrongType: StaticString = "WRONGTYPE Operation against a key holding the wrong kind of value"
    static let notInt: StaticString = "ERR value is not an integer or out of range"
    static let notFloat: StaticString = "ERR value is not a valid float"
    static let syntax: StaticString = "ERR syntax error"
    static let overflow: StaticString = "ERR increment or decrement would overflow"
    static let noAuth: StaticString = "NOAUTH Authentication required."
    static let oom: StaticString = "OOM command not allowed when used memory > 'maxmemory'."
    static let noSuchKey: StaticString = "ERR no such key"
    static let outOfRangePositive: StaticString = "ERR value is out of range, must be positive"
    static let minMaxNotFloat: StaticString = "ERR min or max is not a float"
}

/// Everything the event loop executes commands against: the keyspace, pub/sub state,
/// the command table and configuration. Owned by the event-loop thread; every method
/// runs there.
final class Engine {
    let config: CacheConfig
    let db = Keyspace()
    let table = CommandTable()
    let pubsub = PubSub()
    var nextClientID: Int64 = 1
    let startedAt = unixMillis()
    var totalCommands = 0
    var totalConnections = 0
    var rejectedConnections = 0
    var dirty = 0
    /// Connected clients (for INFO).
    var connectedClients = 0
    /// Called with (channel, message) for every PUBLISH (the host relays to WebSocket).
    var onPublish: ((Arg, Arg) -> Void)?
    /// Clients that got output from someone else's command (pub/sub) and need a flush.
    var wakeForWrite: ((Client) -> Void)?

    init(config: CacheConfig) {
        self.config = config
        db.maxmemory = config.maxmemory
        db.evictionEnabled = config.maxmemoryPolicy != "noeviction"
    }

    var requiresAuth: Bool { config.requirepass != nil }

    // MARK: - Dispatch

    /// Runs one parsed command for `c` (processCommand's checks in Redis's order).
    func execute(_ c: Client, _ argv: UnsafeMutablePointer<Arg>, _ argc: Int) {
        totalCommands += 1
        let out = c.out
        guard let cmd = table.lookup(argv[0]), !(table.rules[cmd.rawValue].has(CommandRule.internalOnly) && !c.isInternal) else {
            if c.inMulti { c.multiDirty = true }
            out.error(unknownCommandMessage(argv, argc))
            return
        }
        let rule = table.rules[cmd.rawValue]
        let arity = Int(rule.arity)
        if (arity > 0 && argc != arity) || argc < -arity {
            if c.inMulti { c.multiDirty = true }
            out.error("ERR wrong number of arguments for '\(table.specs[cmd.rawValue].name)' command")
            return
        }
        if rule.has(CommandRule.subcommands), let problem = table.checkSubcommand(cmd, argv, argc) {
            if c.inMulti { c.multiDirty = true }
            out.error(problem)
            return
        }
        if !c.authenticated && !rule.has(CommandRule.noAuth) {
            if c.inMulti { c.multiDirty = true }
            out.error(Err.noAuth)
            return
        }
        if c.isInternal && rule.has(CommandRule.connectionOnly) {
            out.error("ERR '\(table.specs[cmd.rawValue].name)' is not available through the host interface")
            return
        }
        if rule.has(CommandRule.denyOOM) && db.maxmemory > 0 && !db.evictIfNeeded() {
            if c.inMulti { c.multiDirty = true }
            out.error(Err.oom)
            return
        }
        if out.resp == 2 && !rule.has(CommandRule.pubsubContext) && c.subscriptionCount > 0 {
            out.error("ERR Can't execute '\(table.specs[cmd.rawValue].name)': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
            return
        }
        if c.inMulti && !rule.has(CommandRule.notQueued) {
            c.queued.append((0..<argc).map { argv[$0].array })
            out.raw("+QUEUED\r\n")
            return
        }
        run(cmd, c, argv, argc)
        if rule.has(CommandRule.write) { dirty += 1 }
    }

    func unknownCommandMessage(_ argv: UnsafeMutablePointer<Arg>, _ argc: Int) -> String {
        var args = ""
        var i = 1
        while i < argc && args.utf8.count < 128 {
            let room = 128 - args.utf8.count
            args += "'" + String(decoding: argv[i].array.prefix(room), as: UTF8.self) + "' "
            i += 1
        }
        let name = String(decoding: argv[0].array.prefix(128), as: UTF8.self)
        return "ERR unknown command '\(name)', with args beginning with: \(args)"
    }

    @inline(__always)
    func run(_ cmd: Cmd, _ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        switch cmd {
        case .get: get(c, a)
        case .set: set(c, a, n)
        case .incr: incrBy(c, a[1], 1)
        case .decr: incrBy(c, a[1], -1)
        case .incrby, .decrby: incrByCommand(c, a, negate: cmd == .decrby)
        case .lpush, .rpush: push(c, a, n, front: cmd == .lpush)
        case .lpop, .rpop: pop(c, a, n, front: cmd == .lpop)
        case .hset, .hmset: hset(c, a, n, legacy: cmd == .hmset)
        case .hget: hget(c, a)
        case .ping: ping(c, a, n)
        case .echo: c.out.bulk(a[1])
        case .hello: hello(c, a, n)
        case .auth: auth(c, a, n)
        case .select: select(c, a)
        case .client: client(c, a, n)
        case .quit:
            c.out.ok()
            c.closeAfterReply = true
        case .reset: reset(c)
        case .command: command(c, a, n)
        case .info: info(c, a, n)
        case .dbsize: c.out.integer(db.count)
        case .flushdb, .flushall: flush(c, a, n)
        case .del, .unlink: del(c, a, n)
        case .exists: exists(c, a, n)
        case .type: type(c, a)
        case .expire: expire(c, a, n, unitMs: 1000, absolute: false, name: "expire")
        case .pexpire: expire(c, a, n, unitMs: 1, absolute: false, name: "pexpire")
        case .expireat: expire(c, a, n, unitMs: 1000, absolute: true, name: "expireat")
        case .pexpireat: expire(c, a, n, unitMs: 1, absolute: true, name: "pexpireat")
        case .ttl: ttl(c, a, ms: false)
        case .pttl: ttl(c, a, ms: true)
        case .persist: persist(c, a)
        case .keys: keys(c, a)
        case .scan: scan(c, a, n)
        case .rename: rename(c, a)
        case .mget: mget(c, a, n)
        case .mset: mset(c, a, n)
        case .setnx: setnx(c, a)
        case .getdel: getdel(c, a)
        case .getex: getex(c, a, n)
        case .getset: getset(c, a)
        case .incrbyfloat: incrByFloat(c, a)
        case .append: append(c, a)
        case .strlen: strlen(c, a)
        case .getrange: getrange(c, a)
        case .hmget: hmget(c, a, n)
        case .hdel: hdel(c, a, n)
        case .hgetall: hgetall(c, a, keys: true, values: true)
        case .hkeys: hgetall(c, a, keys: true, values: false)
        case .hvals: hgetall(c, a, keys: false, values: true)
        case .hlen: hlen(c, a)
        case .hexists: hexists(c, a)
        case .hincrby: hincrby(c, a)
        case .lrange: lrange(c, a)
        case .llen: llen(c, a)
        case .lindex: lindex(c, a)
        case .lrem: lrem(c, a)
        case .ltrim: ltrim(c, a)
        case .sadd: sadd(c, a, n)
        case .srem: srem(c, a, n)
        case .smembers: smembers(c, a)
        case .sismember: sismember(c, a)
        case .scard: scard(c, a)
        case .sinter: sinterUnion(c, a, n, union: false)
        case .sunion: sinterUnion(c, a, n, union: true)
        case .zadd: zadd(c, a, n, scoreIndex: 2, incrOnly: false)
        case .zincrby: zadd(c, a, n, scoreIndex: 2, incrOnly: true)
        case .zrem: zrem(c, a, n)
        case .zscore: zscore(c, a)
        case .zcard: zcard(c, a)
        case .zrange: zrange(c, a, n)
        case .zrangebyscore: zrangeByScore(c, a, n)
        case .zrevrange: zrevrange(c, a, n)
        case .zrank: zrank(c, a)
        case .subscribe: subscribe(c, a, n, pattern: false)
        case .psubscribe: subscribe(c, a, n, pattern: true)
        case .unsubscribe: unsubscribe(c, a, n, pattern: false)
        case .punsubscribe: unsubscribe(c, a, n, pattern: true)
        case .publish: c.out.integer(publish(a[1], a[2]))
        case .pubsub: pubsubCommand(c, a, n)
        case .multi: multi(c)
        case .exec: exec(c)
        case .discard: discard(c)
        case .pylonCleanup: c.out.integer(db.expireAll())
        }
    }

    // MARK: - Helpers shared by the command files

    /// The live key's position if it holds `kind`, -1 if absent; nil (after replying
    /// WRONGTYPE) if it holds another type.
    @inline(__always)
    func typed(_ c: Client, _ key: Arg, _ kind: Kind, stats: Bool = false) -> Int? {
        let i = db.lookup(key, countStats: stats)
        if i >= 0 && db.map.values[i].kind != kind {
            c.out.error(Err.wrongType)
            return nil
        }
        return i
    }

    /// Parses an integer argument or replies the standard error.
    @inline(__always)
    func intArg(_ c: Client, _ a: Arg) -> Int64? {
        guard let v = parseInt64(a) else {
            c.out.error(Err.notInt)
            return nil
        }
        return v
    }

    // MARK: - Transactions

    func multi(_ c: Client) {
        if c.inMulti {
            c.out.error("ERR MULTI calls can not be nested")
            return
        }
        c.inMulti = true
        c.multiDirty = false
        c.queued.removeAll()
        c.out.ok()
    }

    func discard(_ c: Client) {
        guard c.inMulti else {
            c.out.error("ERR DISCARD without MULTI")
            return
        }
        c.inMulti = false
        c.queued.removeAll()
        c.out.ok()
    }

    func exec(_ c: Client) {
        guard c.inMulti else {
            c.out.error("ERR EXEC without MULTI")
            return
        }
        let queued = c.queued
        c.inMulti = false
        c.queued.removeAll()
        if c.multiDirty {
            c.multiDirty = false
            c.out.error("EXECABORT Transaction discarded because of previous errors.")
            return
        }
        c.out.array(queued.count)
        var scratch = UnsafeMutablePointer<Arg>.allocate(capacity: 8)
        var cap = 8
        defer { scratch.deallocate() }
        for argv in queued {
            if argv.count > cap {
                scratch.deallocate()
                cap = argv.count
                scratch = .allocate(capacity: cap)
            }
            // Arguments point into `queued`, which outlives the loop.
            var ptrs: [UnsafeMutableBufferPointer<UInt8>] = []
            for (i, bytes) in argv.enumerated() {
                let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
                _ = b.initialize(from: bytes)
                ptrs.append(b)
                scratch[i] = Arg(ptr: UnsafePointer(b.baseAddress!), len: bytes.count)
            }
            let cmd = table.lookup(scratch[0])!
            let rule = table.rules[cmd.rawValue]
            if rule.has(CommandRule.denyOOM) && db.maxmemory > 0 && !db.evictIfNeeded() {
                c.out.error(Err.oom)
            } else {
                totalCommands += 1
                run(cmd, c, scratch, argv.count)
                if rule.has(CommandRule.write) { dirty += 1 }
            }
            for b in ptrs { b.deallocate() }
        }
    }
}
