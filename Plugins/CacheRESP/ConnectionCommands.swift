import CCacheRESPShim

/// Connection and server commands: PING ECHO HELLO AUTH SELECT CLIENT RESET COMMAND INFO
/// FLUSHDB FLUSHALL.
extension Engine {
    static let serverVersion = "7.0.15"

    func ping(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        if n > 2 {
            c.out.error("ERR wrong number of arguments for 'ping' command")
            return
        }
        if c.out.resp == 2 && c.subscriptionCount > 0 {
            c.out.array(2)
            c.out.bulk("pong")
            if n == 2 { c.out.bulk(a[1]) } else { c.out.bulk([UInt8]()) }
        } else if n == 2 {
            c.out.bulk(a[1])
        } else {
            c.out.raw("+PONG\r\n")
        }
    }

    func checkPassword(_ user: Arg?, _ password: Arg) -> Bool {
        if let user, !user.is("default") { return false }
        guard let required = config.requirepass else { return true }
        return withArg(Array(required.utf8)) { constantTimeEquals($0, password) }
    }

    func auth(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        if n > 3 {
            c.out.error(Err.syntax)
            return
        }
        if n == 2 && config.requirepass == nil {
            c.out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
            return
        }
        if checkPassword(n == 3 ? a[1] : nil, a[n - 1]) {
            c.authenticated = true
            c.out.ok()
        } else {
            c.out.error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    func hello(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        var version = 0
        var next = 1
        if n >= 2 {
            guard let v = parseInt64(a[1]) else {
                c.out.error("ERR Protocol version is not an integer or out of range")
                return
            }
            next = 2
            if v < 2 || v > 3 {
                c.out.error("NOPROTO unsupported protocol version")
                return
            }
            version = Int(v)
        }
        var credentials: (Arg, Arg)?
        var newName: Arg?
        var j = next
        while j < n {
            let more = n - 1 - j
            if a[j].is("auth") && more >= 2 {
                credentials = (a[j + 1], a[j + 2])
                j += 3
            } else if a[j].is("setname") && more >= 1 {
                guard validClientName(a[j + 1]) else {
                    c.out.error("ERR Client names cannot contain spaces, newlines or special characters.")
                    return
                }
                newName = a[j + 1]
                j += 2
            } else {
                c.out.error("ERR Syntax error in HELLO option '\(a[j].string)'")
                return
            }
        }
        if let (user, pass) = credentials {
            guard checkPassword(user, pass) else {
                c.out.error("WRONGPASS invalid username-password pair or user is disabled.")
                return
            }
            c.authenticated = true
        }
        guard c.authenticated else {
            c.out.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
            return
        }
        if let newName { c.name = newName.len == 0 ? nil : newName.array }
        if version != 0 { c.out.resp = version }
        c.out.map(7)
        c.out.bulk("server"); c.out.bulk("redis")
        c.out.bulk("version"); c.out.bulk(Self.serverVersion)
        c.out.bulk("proto"); c.out.integer(c.out.resp)
        c.out.bulk("id"); c.out.integer(c.id)
        c.out.bulk("mode"); c.out.bulk("standalone")
        c.out.bulk("role"); c.out.bulk("master")
        c.out.bulk("modules"); c.out.array(0)
    }

    func validClientName(_ a: Arg) -> Bool {
        for i in 0..<a.len where a[i] < 33 || a[i] > 126 { return false }
        return true
    }

    func select(_ c: Client, _ a: UnsafeMutablePointer<Arg>) {
        guard let v = parseInt64(a[1]), v >= Int64(Int32.min), v <= Int64(Int32.max) else {
            c.out.error(Err.notInt)
            return
        }
        // One database: SELECT 0 only (documented difference).
        if v == 0 { c.out.ok() } else { c.out.error("ERR DB index is out of range") }
    }

    func client(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        let sub = a[1]
        func arity(_ name: String) { c.out.error("ERR wrong number of arguments for 'client|\(name)' command") }
        if sub.is("id") {
            if n != 2 { return arity("id") }
            c.out.integer(c.id)
        } else if sub.is("setname") {
            if n != 3 { return arity("setname") }
            guard validClientName(a[2]) else {
                c.out.error("ERR Client names cannot contain spaces, newlines or special characters.")
                return
            }
            c.name = a[2].len == 0 ? nil : a[2].array
            c.out.ok()
        } else if sub.is("getname") {
            if n != 2 { return arity("getname") }
            if let name = c.name { c.out.bulk(name) } else { c.out.null() }
        } else if sub.is("setinfo") {
            if n != 4 { return arity("setinfo") }
            c.out.ok()
        } else if sub.is("info") || sub.is("list") {
            let line = "id=\(c.id) addr=127.0.0.1 fd=\(c.fd) name=\(c.name.map { String(decoding: $0, as: UTF8.self) } ?? "") db=0 sub=\(c.channels.count) psub=\(c.patterns.count) multi=\(c.inMulti ? c.queued.count : -1) resp=\(c.out.resp)\n"
            c.out.verbatim(line)
        } else if sub.is("help") {
            let lines = ["CLIENT <subcommand> [<arg> ...]. Subcommands are:", "ID", "    Return the ID of the current connection.",
                         "GETNAME", "    Return the name of the current connection.", "SETNAME <name>",
                         "    Assign the name <name> to the current connection.", "INFO", "    Return information about the current client connection.",
                         "HELP", "    Print this help."]
            c.out.array(lines.count)
            for l in lines { c.out.simple(Array(l.utf8)) }
        } else {
            c.out.error("ERR unknown subcommand '\(sub.string)'. Try CLIENT HELP.")
        }
    }

    func reset(_ c: Client) {
        c.inMulti = false
        c.multiDirty = false
        c.queued.removeAll()
        pubsub.remove(c)
        c.out.resp = c.isInternal ? 3 : 2
        c.name = nil
        c.authenticated = c.isInternal || config.requirepass == nil
        c.out.raw("+RESET\r\n")
    }

    func flush(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        if n > 2 || (n == 2 && !a[1].is("async") && !a[1].is("sync")) {
            c.out.error(Err.syntax)
            return
        }
        db.flush()
        c.out.ok()
    }

    // MARK: - COMMAND

    func command(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        let visible = table.specs.enumerated().filter { !$0.element.internalOnly }
        if n == 1 {
            c.out.array(visible.count)
            for (i, s) in visible { commandInfo(c, s, Cmd(rawValue: i)!) }
            return
        }
        let sub = a[1]
        if sub.is("count") && n == 2 {
            c.out.integer(visible.count)
        } else if sub.is("list") && n == 2 {
            c.out.array(visible.count)
            for (_, s) in visible { c.out.bulk(s.name) }
        } else if sub.is("info") {
            if n == 2 {
                c.out.array(visible.count)
                for (i, s) in visible { commandInfo(c, s, Cmd(rawValue: i)!) }
                return
            }
            c.out.array(n - 2)
            for i in 2..<n {
                if let cmd = table.lookup(a[i]), !table.specs[cmd.rawValue].internalOnly {
                    commandInfo(c, table.specs[cmd.rawValue], cmd)
                } else {
                    c.out.nullArray()
                }
            }
        } else if sub.is("docs") {
            var chosen: [CommandSpec] = []
            if n == 2 {
                chosen = visible.map(\.element)
            } else {
                for i in 2..<n {
                    if let cmd = table.lookup(a[i]), !table.specs[cmd.rawValue].internalOnly { chosen.append(table.specs[cmd.rawValue]) }
                }
            }
            c.out.map(chosen.count)
            for s in chosen {
                c.out.bulk(s.name)
                c.out.map(3)
                c.out.bulk("summary"); c.out.bulk("\(s.name.uppercased()) (Pylon CacheRESP)")
                c.out.bulk("since"); c.out.bulk("1.0.0")
                c.out.bulk("group"); c.out.bulk(s.group)
            }
        } else {
            c.out.error("ERR unknown subcommand '\(sub.string)'. Try COMMAND HELP.")
        }
    }

    private func commandInfo(_ c: Client, _ s: CommandSpec, _ cmd: Cmd) {
        let keyless: Set<String> = ["connection", "server", "pubsub", "transactions"]
        let multiKey: Set<Cmd> = [.del, .unlink, .exists, .mget, .sinter, .sunion]
        let first = keyless.contains(s.group) || cmd == .scan || cmd == .keys ? 0 : 1
        let last = first == 0 ? 0 : (multiKey.contains(cmd) ? -1 : (cmd == .mset ? -1 : (cmd == .rename ? 2 : 1)))
        let step = first == 0 ? 0 : (cmd == .mset ? 2 : 1)
        c.out.array(10)
        c.out.bulk(s.name)
        c.out.integer(s.arity)
        var flags: [String] = [s.write ? "write" : "readonly"]
        if s.denyOOM { flags.append("denyoom") }
        if s.noAuth { flags.append("no_auth") }
        if s.pubsubContext { flags.append("pubsub") }
        c.out.set(flags.count)
        for f in flags { c.out.simple(Array(f.utf8)) }
        c.out.integer(first)
        c.out.integer(last)
        c.out.integer(step)
        c.out.set(0)
        c.out.set(0)
        c.out.array(0)
        c.out.array(0)
    }

    // MARK: - INFO

    func info(_ c: Client, _ a: UnsafeMutablePointer<Arg>, _ n: Int) {
        let now = unixMillis()
        var sections: [(String, [(String, String)])] = [
            ("Server", [("redis_version", Self.serverVersion), ("pylon_cache", "CacheRESP 0.1.0"), ("redis_mode", "standalone"),
                        ("process_id", "\(pcr_getpid())"), ("tcp_port", "\(config.port)"),
                        ("uptime_in_seconds", "\((now - startedAt) / 1000)")]),
            ("Clients", [("connected_clients", "\(connectedClients)"), ("maxclients", "\(config.clientLimit)")]),
            ("Memory", [("used_memory", "\(db.used)"), ("maxmemory", "\(db.maxmemory)"),
                        ("maxmemory_policy", config.maxmemoryPolicy)]),
            ("Persistence", [("rdb_changes_since_last_save", "\(dirty)"),
                             ("snapshot_path", config.snapshotPath ?? "")]),
            ("Stats", [("total_connections_received", "\(totalConnections)"), ("total_commands_processed", "\(totalCommands)"),
                       ("rejected_connections", "\(rejectedConnections)"),
                       ("expired_keys", "\(db.expiredKeys)"), ("evicted_keys", "\(db.evictedKeys)"),
                       ("keyspace_hits", "\(db.hits)"), ("keyspace_misses", "\(db.misses)"),
                       ("pubsub_channels", "\(pubsub.channels.count)"), ("pubsub_patterns", "\(pubsub.patterns.count)")]),
            ("Keyspace", db.count > 0 ? [("db0", "keys=\(db.count),expires=\(db.expiring.count),avg_ttl=0")] : []),
        ]
        if n >= 2 {
            let wanted = Set((1..<n).map { a[$0].string.lowercased() })
            if !wanted.contains("all") && !wanted.contains("everything") && !wanted.contains("default") {
                sections = sections.filter { wanted.contains($0.0.lowercased()) }
            }
        }
        var text = ""
        for (i, (name, fields)) in sections.enumerated() {
            if i > 0 { text += "\r\n" }
            text += "# \(name)\r\n"
            for (k, v) in fields { text += "\(k):\(v)\r\n" }
        }
        c.out.verbatim(text)
    }
}

/// Compares without an early exit, so the time taken does not reveal the password.
func constantTimeEquals(_ x: Arg, _ y: Arg) -> Bool {
    var diff: UInt8 = x.len == y.len ? 0 : 1
    for i in 0..<max(x.len, y.len) {
        diff |= (i < x.len ? x[i] : 0) ^ (i < y.len ? y[i] : 0)
    }
    return diff == 0
}
