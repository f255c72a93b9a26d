#if canImport(Glibc)
import Glibc
#endif
import CCacheRESPShim
import PylonPluginABI

/// A pthread mutex (no Foundation on the loop's paths).
final class Mutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inline(__always) func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return body()
    }
}

/// A command handed in by the host (`pylon_cache_v1.command`), run on the loop thread.
struct HostJob {
    var argv: [[UInt8]]
    var done: pylon_cache_reply_fn?
    var ctx: UnsafeMutableRawPointer?
}

/// The RESP server: one thread that owns the keyspace and every connection, like Redis.
/// Non-blocking sockets under epoll; each readable client has its input parsed and every
/// complete command executed in order (pipelining), then its replies are written in one
/// `send`. Host calls arrive through a locked queue and an eventfd.
final class Server: @unchecked Sendable {
    let config: CacheConfig
    let engine: Engine
    let log: (Int32, String) -> Void
    private var parser: RequestParser
    private var epfd: Int32 = -1
    private var listenFD: Int32 = -1
    private var eventFD: Int32 = -1
    private var clients: [Client?] = []
    private var pendingWrites: [Client] = []
    private let internalClient: Client
    private let protectedMode: ProtectedMode
    private var thread: pthread_t?
    /// The port actually bound (0 = no RESP listener).
    private(set) var boundPort = 0

    // Shared with other threads, under `lock`.
    private let lock = Mutex()
    private var jobs: [HostJob] = []
    private var stopping = false
    private var listener: (pylon_cache_message_fn, UnsafeMutableRawPointer?)?

    private var lastCron: Int64 = 0
    /// While the process is out of file descriptors the listener is not watched (a
    /// level-triggered listener that cannot accept would wake the loop without end); `cron`
    /// watches it again at this time (Unix ms). 0: accepting.
    private var acceptPausedUntil: Int64 = 0
    private var lastSnapshot: Int64 = 0

    init(config: CacheConfig, log: @escaping (Int32, String) -> Void) {
        self.config = config
        self.log = log
        engine = Engine(config: config)
        protectedMode = ProtectedMode(config: config)
        parser = RequestParser(maxBulk: config.maxBulkBytes, maxMultibulk: config.maxMultibulk, maxQuery: config.queryLimit)
        internalClient = Client(fd: -1, id: 0, authenticated: true, isInternal: true)
        engine.wakeForWrite = { [unowned self] c in
            if !c.pendingWrite && !c.isInternal {
                c.pendingWrite = true
                pendingWrites.append(c)
            }
        }
        engine.onPublish = { [unowned self] ch, msg in
            // Called under the lock, so once `setListener` returns the old one is done.
            lock.locked {
                guard let (fn, ctx) = listener else { return }
                fn(ctx, ch.ptr, ch.len, msg.ptr, msg.len)
            }
        }
    }

    func setListener(_ fn: pylon_cache_message_fn?, _ ctx: UnsafeMutableRawPointer?) {
        lock.locked { listener = fn.map { ($0, ctx) } }
    }

    // MARK: - Start and stop

    /// Binds the listener (unless port 0) and starts the loop thread. A bind failure is
    /// an error only when `config.portRequired`; otherwise the cache runs without RESP.
    func start() -> String? {
        epfd = pcr_epoll_create()
        eventFD = pcr_eventfd()
        guard epfd >= 0, eventFD >= 0 else { return "epoll/eventfd: \(String(cString: strerror(errno)))" }
        watch(eventFD, UInt32(PCR_EV_IN))
        if config.port != 0 {
            switch listen(host: config.bind, port: config.port) {
            case let .success(fd):
                listenFD = fd
                boundPort = config.port
                watch(listenFD, UInt32(PCR_EV_IN))
            case let .failure(problem):
                let message = problem.description
                if config.portRequired { return message }
                log(PYLON_LOG_ERROR, "pylon.cache.resp: \(message); the RESP listener is off (HTTP /api/cache and /api/pubsub still work). Set PYLON_CACHE_PORT to a free port.")
            }
        }
        if let path = config.snapshotPath {
            switch Snapshot.load(path: path, into: engine.db) {
            case let .loaded(n): if n > 0 { log(PYLON_LOG_INFO, "pylon.cache.resp: loaded \(n) keys from \(path)") }
            case .missing: break
            case let .corrupt(reason, movedTo):
                log(PYLON_LOG_ERROR, "pylon.cache.resp: snapshot \(path) is corrupt (\(reason)); set aside as \(movedTo), starting empty")
            }
        }
        lastSnapshot = unixMillis()
        let me = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let s = Unmanaged<Server>.fromOpaque(arg!).takeRetainedValue()
            s.loop()
            return nil
        }, me)
        if rc != 0 {
            Unmanaged<Server>.fromOpaque(me).release()
            return "cannot start the RESP thread (error \(rc))"
        }
        thread = tid
        if boundPort != 0 {
            log(PYLON_LOG_INFO, "pylon.cache.resp: RESP2/RESP3 on \(config.bind):\(boundPort)")
            if let warning = ProtectedMode.warning(config, endpoint: "\(config.bind):\(boundPort)") { log(PYLON_LOG_WARN, warning) }
            if config.clientLimit < config.maxClients {
                log(PYLON_LOG_WARN, "pylon.cache.resp: maxclients \(config.maxClients) is more than the open-file limit allows; serving at most \(config.clientLimit) clients (raise the limit with ulimit -n)")
            }
        }
        return nil
    }

    /// Stops the loop, saves a snapshot (if configured) and closes every socket.
    func stop() {
        lock.locked { stopping = true }
        wake()
        if let t = thread { pthread_join(t, nil) }
        thread = nil
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }

    private func watch(_ fd: Int32, _ events: UInt32, modify: Bool = false) {
        _ = pcr_epoll_ctl(epfd, modify ? 1 : 0, fd, events)
    }

    private func listen(host: String, port: Int) -> Result<Int32, ListenError> {
        let fd = pcr_listen_socket()
        guard fd >= 0 else { return .failure(ListenError("socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            Glibc.close(fd)
            return .failure(ListenError("bind address \(host) is not an IPv4 address"))
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 {
            let e = String(cString: strerror(errno))
            Glibc.close(fd)
            return .failure(ListenError("cannot listen on \(host):\(port): \(e)"))
        }
        if Glibc.listen(fd, 511) != 0 {
            let e = String(cString: strerror(errno))
            Glibc.close(fd)
            return .failure(ListenError("listen on \(host):\(port): \(e)"))
        }
        return .success(fd)
    }

    /// Queues a host command; `done` runs on the loop thread.
    func submit(_ job: HostJob) {
        let accepted = lock.locked { () -> Bool in
            if stopping { return false }
            jobs.append(job)
            return true
        }
        if accepted {
            wake()
        } else {
            let msg = Array("-ERR the cache is shutting down\r\n".utf8)
            msg.withUnsafeBufferPointer { job.done?(job.ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
    }

    // MARK: - The loop

    private func loop() {
        let maxEvents = 256
        let events = UnsafeMutablePointer<pcr_event>.allocate(capacity: maxEvents)
        defer { events.deallocate() }
        while true {
            flushPendingWrites()
            let n = pcr_epoll_wait(epfd, events, Int32(maxEvents), 100)
            if lock.locked({ stopping }) { break }
            if n > 0 {
                for k in 0..<Int(n) {
                    let ev = events[k]
                    let fd = ev.fd
                    if fd == listenFD {
                        acceptAll()
                    } else if fd == eventFD {
                        var v: UInt64 = 0
                        _ = read(eventFD, &v, 8)
                        runHostJobs()
                    } else if Int(fd) < clients.count, let c = clients[Int(fd)] {
                        if ev.events & UInt32(PCR_EV_IN | PCR_EV_ERR) != 0 { readFrom(c) }
                        if !c.closed && ev.events & UInt32(PCR_EV_OUT) != 0 { writeTo(c) }
                    }
                }
            }
            let now = unixMillis()
            if now - lastCron >= 100 {
                lastCron = now
                cron(now)
            }
        }
        // Shutdown: answer queued host calls, snapshot, close everything.
        runHostJobs()
        let left = lock.locked { () -> [HostJob] in
            let j = jobs
            jobs.removeAll()
            return j
        }
        for job in left {
            let msg = Array("-ERR the cache is shutting down\r\n".utf8)
            msg.withUnsafeBufferPointer { job.done?(job.ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
        saveSnapshot()
        for c in clients.compactMap({ $0 }) { closeClient(c) }
        if listenFD >= 0 { Glibc.close(listenFD) }
        Glibc.close(eventFD)
        Glibc.close(epfd)
    }

    private func cron(_ now: Int64) {
        if acceptPausedUntil != 0 && now >= acceptPausedUntil {
            acceptPausedUntil = 0
            watch(listenFD, UInt32(PCR_EV_IN))
        }
        engine.db.expireCycle()
        if config.partialTimeoutMs > 0 {
            for case let c? in clients where !c.closed && c.unparsed > 0 && c.partialSince > 0
                && now - c.partialSince > Int64(config.partialTimeoutMs) {
                c.out.error("ERR Protocol error: incomplete command not completed within \(config.partialTimeoutMs) ms")
                c.closeAfterReply = true
                c.inStart = c.inEnd
                writeTo(c)
            }
        }
        if config.snapshotPath != nil && config.snapshotIntervalSecs > 0
            && now - lastSnapshot >= Int64(config.snapshotIntervalSecs) * 1000 && engine.dirty > 0 {
            saveSnapshot()
        }
    }

    private func saveSnapshot() {
        guard let path = config.snapshotPath else { return }
        lastSnapshot = unixMillis()
        if let problem = Snapshot.save(engine.db, path: path) {
            log(PYLON_LOG_ERROR, "pylon.cache.resp: snapshot to \(path) failed: \(problem)")
        } else {
            engine.dirty = 0
        }
    }

    private func runHostJobs() {
        let batch = lock.locked { () -> [HostJob] in
            let j = jobs
            jobs.removeAll()
            return j
        }
        let c = internalClient
        for job in batch {
            parser.ensureArgv(max(1, job.argv.count))
            var buffers: [UnsafeMutableBufferPointer<UInt8>] = []
            for (i, bytes) in job.argv.enumerated() {
                let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
                _ = b.initialize(from: bytes)
                buffers.append(b)
                parser.argv[i] = Arg(ptr: UnsafePointer(b.baseAddress!), len: bytes.count)
            }
            if job.argv.isEmpty {
                c.out.error("ERR empty command")
            } else if let big = job.argv.first(where: { $0.count > config.maxBulkBytes }) {
                // The RESP parser's limit, for the host's commands too (its HTTP cache API).
                c.out.error("ERR " + RequestParser.overLimit("bulk length", Int64(big.count), "bytes", "max_bulk_bytes", config.maxBulkBytes))
            } else {
                engine.execute(c, parser.argv, job.argv.count)
            }
            for b in buffers { b.deallocate() }
            let reply = c.out.take()
            reply.withUnsafeBufferPointer { job.done?(job.ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
    }

    private func acceptAll() {
        while true {
            var peer: UInt32 = 0
            let fd = pcr_accept(listenFD, &peer)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { pauseAccepting() }
                return
            }
            engine.totalConnections += 1
            if protectedMode.refuses(peer: peer) {
                refuse(fd, ProtectedMode.deniedReply)
                continue
            }
            if engine.connectedClients >= config.clientLimit {
                refuse(fd, "-ERR max number of clients reached\r\n")
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
            let c = Client(fd: fd, id: engine.nextClientID, authenticated: !engine.requiresAuth)
            c.out.limit = config.maxOutputBytes
            engine.nextClientID += 1
            engine.connectedClients += 1
            while clients.count <= Int(fd) { clients.append(nil) }
            clients[Int(fd)] = c
            watch(fd, UInt32(PCR_EV_IN))
        }
    }

    /// Out of descriptors (or kernel memory): stop watching the listener for 100 ms instead of
    /// spinning on it; waiting clients stay in the backlog, served clients are unaffected.
    private func pauseAccepting() {
        if acceptPausedUntil == 0 {
            engine.rejectedConnections += 1
            log(PYLON_LOG_WARN, "pylon.cache.resp: cannot accept a client (\(String(cString: strerror(errno)))); pausing accepts for 100 ms (raise the open-file limit or lower maxclients)")
        }
        _ = pcr_epoll_ctl(epfd, 2, listenFD, 0)
        acceptPausedUntil = unixMillis() + 100
    }

    /// Answers a connection that is not served with one error line and closes it; the
    /// reply is short, so one non-blocking send fits the fresh socket's buffer.
    private func refuse(_ fd: Int32, _ reply: String) {
        engine.rejectedConnections += 1
        _ = reply.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        Glibc.close(fd)
    }

    private func readFrom(_ c: Client) {
        let free = max(16 * 1024, c.need - c.unparsed)
        c.reserveInput(free)
        let r = read(c.fd, c.inBuf + c.inEnd, c.inCap - c.inEnd)
        if r > 0 {
            c.inEnd += r
            process(c)
        } else if r == 0 {
            if c.unparsed > 0 && !c.closeAfterReply {
                // A half-sent command: say so (the peer may still read), then close.
                c.out.error("ERR Protocol error: connection closed in the middle of a command")
                c.closeAfterReply = true
                c.inStart = c.inEnd
                writeTo(c)
            }
            closeClient(c)
        } else if errno != EAGAIN && errno != EINTR {
            closeClient(c)
        }
    }

    private func process(_ c: Client) {
        var needed = 0
        parsing: while !c.closeAfterReply && !c.closed && c.unparsed > 0 {
            let authed = c.authenticated
            switch parser.parse(UnsafePointer(c.inBuf + c.inStart), c.unparsed, authenticated: authed) {
            case let .command(argc, consumed):
                // An HTTP request on this port is a web page reaching a cache on this
                // machine (a cross-protocol attack): as Redis does, nothing of it runs and
                // the connection closes without an answer.
                if parser.argv[0].is("post") || parser.argv[0].is("host:") {
                    log(PYLON_LOG_WARN, "pylon.cache.resp: client \(c.id) sent an HTTP request ('POST' or 'Host:') to the RESP port, probably a web page's cross-protocol attack; connection closed")
                    c.closeAfterReply = true
                    c.inStart = c.inEnd
                    break parsing
                }
                engine.execute(c, parser.argv, argc)
                c.inStart += consumed
                // Replies past max_output_bytes: nothing more of this client runs.
                if c.out.overflowed {
                    c.inStart = c.inEnd
                    break parsing
                }
            case let .empty(consumed):
                c.inStart += consumed
            case let .incomplete(need):
                needed = need
                break parsing
            case let .error(message):
                c.out.error("ERR " + message)
                c.closeAfterReply = true
                c.inStart = c.inEnd
            }
        }
        c.need = needed
        c.partialSince = c.unparsed > 0 ? unixMillis() : 0
        c.shrinkInputIfIdle()
        writeTo(c)
    }

    private func flushPendingWrites() {
        guard !pendingWrites.isEmpty else { return }
        let list = pendingWrites
        pendingWrites.removeAll(keepingCapacity: true)
        for c in list {
            c.pendingWrite = false
            if !c.closed { writeTo(c) }
        }
    }

    private func writeTo(_ c: Client) {
        let out = c.out
        if out.overflowed {
            log(PYLON_LOG_WARN, "pylon.cache.resp: client \(c.id) closed: its replies passed \(config.maxOutputBytes) bytes unsent (max_output_bytes); read replies before sending more commands, or raise the limit")
            closeClient(c)
            return
        }
        while out.pending > 0 {
            let n = send(c.fd, out.base + out.sent, out.pending, Int32(MSG_NOSIGNAL))
            if n > 0 {
                out.sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if errno == EINTR { continue }
                if out.pending > config.maxOutputBytes {
                    log(PYLON_LOG_WARN, "pylon.cache.resp: client \(c.id) closed: \(out.pending) bytes of output unread (limit \(config.maxOutputBytes))")
                    closeClient(c)
                    return
                }
                if !c.writeArmed {
                    c.writeArmed = true
                    watch(c.fd, UInt32(PCR_EV_IN | PCR_EV_OUT), modify: true)
                }
                out.compact()
                return
            } else {
                closeClient(c)
                return
            }
        }
        out.compact()
        if c.writeArmed {
            c.writeArmed = false
            watch(c.fd, UInt32(PCR_EV_IN), modify: true)
        }
        if c.closeAfterReply { closeClient(c) }
    }

    private func closeClient(_ c: Client) {
        guard !c.closed else { return }
        c.closed = true
        _ = pcr_epoll_ctl(epfd, 2, c.fd, 0)
        Glibc.close(c.fd)
        engine.pubsub.remove(c)
        if Int(c.fd) < clients.count, clients[Int(c.fd)] === c { clients[Int(c.fd)] = nil }
        engine.connectedClients -= 1
    }
}

struct ListenError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
