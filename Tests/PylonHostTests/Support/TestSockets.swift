import Foundation
import PylonTestPorts
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Raw loopback TCP for the realtime tests (`RealtimeTests`, `PolicyMatrixTests`): a blocking
// socket, a bounded-wait helper, a free run of ports, and the host's resident memory.
//
// Blocking socket calls never run on Swift's cooperative pool: the WebSocket and SSE
// clients (TestWebSocket.swift, TestEventStream.swift) do their connecting and reading on
// a dedicated thread each, and tests observe their state by polling (`eventually`).

// The libc calls whose names clash with methods below.
#if canImport(Glibc)
private func sysConnect(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t) -> Int32 { Glibc.connect(fd, addr, len) }
private func sysSend(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int, _ flags: Int32) -> Int { Glibc.send(fd, buf, n, flags) }
private func sysRecv(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Int { Glibc.recv(fd, buf, n, 0) }
private func sysClose(_ fd: Int32) { _ = Glibc.close(fd) }
#elseif canImport(Darwin)
private func sysConnect(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t) -> Int32 { Darwin.connect(fd, addr, len) }
private func sysSend(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int, _ flags: Int32) -> Int { Darwin.send(fd, buf, n, flags) }
private func sysRecv(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Int { Darwin.recv(fd, buf, n, 0) }
private func sysClose(_ fd: Int32) { _ = Darwin.close(fd) }
#endif

/// A failed wait or socket operation; the description says what was expected and what
/// was seen instead.
struct RealtimeTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `probe` every 10 ms until it returns a value, for at most `timeout` seconds;
/// then throws, describing the wait with `what` (evaluated at that moment, so it can show
/// the state that was seen). Never a timing assertion: only a guard against hanging.
@discardableResult
func eventually<T>(_ what: @autoclosure () -> String, timeout: TimeInterval = 20,
                   _ probe: () throws -> T?) async throws -> T {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if let v = try probe() { return v }
        if Date() >= deadline {
            throw RealtimeTestError("timed out after \(Int(timeout)) s waiting for \(what())")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Runs blocking work on a new thread and returns its result without tying up a thread of
/// the cooperative pool.
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        let t = Thread {
            do { c.resume(returning: try work()) } catch { c.resume(throwing: error) }
        }
        t.start()
    }
}

/// A first port `p` such that `p ..< p + count` are all free on 127.0.0.1 right now (the
/// host with compat listeners binds port, port+1 and port+2).
func freeLoopbackPortRun(count: Int) throws -> Int {
    for _ in 0..<200 {
        let p = try freeLoopbackPort()
        guard p + count - 1 <= 65535 else { continue }
        if (1..<count).allSatisfy({ loopbackPortIsFree(p + $0) && handedOutPorts.claim(p + $0) }) { return p }
    }
    throw RealtimeTestError("found no run of \(count) free loopback ports")
}

/// Whether 127.0.0.1:`port` can be bound now.
func loopbackPortIsFree(_ port: Int) -> Bool {
    let fd = socket(AF_INET, TestSocket.streamType, 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = TestSocket.loopback(port)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// Whether process `pid` itself holds a socket listening on TCP `port` (Linux: the LISTEN
/// entries of /proc/net/tcp for that port, matched by inode against /proc/<pid>/fd). A health
/// check that answers proves only that *some* process listens there; this proves it is ours.
/// Where /proc is unavailable it returns true (nothing to check against).
func processListens(pid: Int32, port: Int) -> Bool {
    // Read to the end: String(contentsOfFile:) returns only the first page of a procfs file
    // (about 27 sockets), so with many sockets open the listener's line was never seen.
    guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return true }
    defer { try? handle.close() }
    let table = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    let portHex = String(format: ":%04X", port)
    var inodes = Set<String>()
    for line in table.split(separator: "\n").dropFirst() {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        guard f.count > 9, f[1].hasSuffix(portHex), f[3] == "0A" else { continue }
        inodes.insert("socket:[\(f[9])]")
    }
    guard !inodes.isEmpty else { return false }
    let fdDir = "/proc/\(pid)/fd"
    guard let fds = try? FileManager.default.contentsOfDirectory(atPath: fdDir) else { return false }
    return fds.contains { fd in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDir)/\(fd)")).map(inodes.contains) ?? false
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func loopbackPortAccepts(_ port: Int) -> Bool {
    guard let s = try? TestSocket.connect(port: port) else { return false }
    s.close()
    return true
}

/// Resident set size of process `pid` in bytes (`VmRSS` in /proc/<pid>/status, Linux), nil
/// if unreadable.
func residentBytes(pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.dropFirst(6).filter { $0.isNumber }
        return Int(digits).map { $0 * 1024 }
    }
    return nil
}

/// One blocking TCP connection to 127.0.0.1. `send` never raises SIGPIPE; `receive`
/// blocks until data, end of stream, or an error. `close` may be called from any thread
/// (it shuts the socket down, which wakes a blocked `receive`); the descriptor itself is
/// released once, by `release`, or on deinit — and only once no `send` or `receive` still
/// uses it: closed under a sender on another thread, its number went to the next socket
/// any test opened, and the rest of the send (a hostile test's megabytes of "aaa…") landed
/// in that stranger's connection, which its host then closed with 1002.
final class TestSocket: @unchecked Sendable {
    enum Received {
        case bytes([UInt8])
        case end
        case failed(String)
    }

    #if canImport(Glibc)
    static let streamType = Int32(SOCK_STREAM.rawValue)
    static let noSignal = Int32(MSG_NOSIGNAL)
    #else
    static let streamType = SOCK_STREAM
    static let noSignal: Int32 = 0
    #endif

    private let lock = NSLock()
    private var fd: Int32
    private var shut = false
    /// Sends and receives running on the descriptor outside the lock.
    private var inUse = 0
    /// `release` came while the descriptor was in use: the last user closes it.
    private var closeWhenIdle = false
    let port: Int

    private init(fd: Int32, port: Int) {
        self.fd = fd
        self.port = port
    }

    deinit { release() }

    static func loopback(_ port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    /// Connects (blocking; loopback connects at once or is refused). `receiveBuffer` sets
    /// SO_RCVBUF before connecting, which fixes the advertised window: a small one makes a
    /// client that stops reading push back on the sender quickly.
    /// `address`: another of this machine's own IPv4 addresses, for a client that is not on
    /// loopback (the kernel then uses that address as the source too).
    static func connect(port: Int, address: String = "127.0.0.1", receiveBuffer: Int? = nil) throws -> TestSocket {
        let fd = socket(AF_INET, streamType, 0)
        guard fd >= 0 else { throw RealtimeTestError("socket() failed: errno \(errno)") }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        #if canImport(Darwin)
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        if let receiveBuffer {
            var size = Int32(receiveBuffer)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = loopback(port)
        addr.sin_addr.s_addr = inet_addr(address)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sysConnect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard r == 0 else {
            let e = errno
            sysClose(fd)
            throw RealtimeTestError("connect to \(address):\(port) failed: \(String(cString: strerror(e)))")
        }
        return TestSocket(fd: fd, port: port)
    }

    /// The descriptor, held open until `relinquish` (nil once the socket is shut).
    private func acquire() -> Int32? {
        lock.withLock {
            guard !shut, fd >= 0 else { return nil }
            inUse += 1
            return fd
        }
    }

    private func relinquish() {
        lock.withLock {
            inUse -= 1
            if inUse == 0, closeWhenIdle { closeDescriptor() }
        }
    }

    /// Lock held.
    private func closeDescriptor() {
        sysClose(fd)
        fd = -1
        closeWhenIdle = false
    }

    /// Writes all of `bytes`, or throws (peer gone, socket closed).
    func send(_ bytes: [UInt8]) throws {
        guard let fd = acquire() else { throw RealtimeTestError("send on a closed socket") }
        defer { relinquish() }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                sysSend(fd, buf.baseAddress! + off, buf.count - off, Self.noSignal)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw RealtimeTestError("send failed: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Blocks for the next bytes (up to `max`).
    func receive(max: Int = 65536) -> Received {
        guard let fd = acquire() else { return .end }
        defer { relinquish() }
        var buf = [UInt8](repeating: 0, count: max)
        while true {
            let n = buf.withUnsafeMutableBytes { sysRecv(fd, $0.baseAddress!, max) }
            if n > 0 { return .bytes(Array(buf[0..<n])) }
            if n == 0 { return .end }
            if errno == EINTR { continue }
            return .failed(String(cString: strerror(errno)))
        }
    }

    /// Shuts the connection down in both directions (wakes a blocked `receive`).
    func close() {
        lock.withLock {
            guard !shut, fd >= 0 else { return }
            shut = true
            _ = shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    /// Shuts the socket down and closes its descriptor, at once or, while another thread
    /// sends or receives on it (the shutdown makes that call return), when it is done.
    func release() {
        lock.withLock {
            guard fd >= 0, !closeWhenIdle else { return }
            if !shut { _ = shutdown(fd, Int32(SHUT_RDWR)) }
            shut = true
            if inUse == 0 { closeDescriptor() } else { closeWhenIdle = true }
        }
    }
}

/// Reads an HTTP/1.1 response head (status line and headers) from `socket`; returns the
/// status, the headers (names lowercased) and any bytes read past the head.
func readHTTPHead(_ socket: TestSocket) throws -> (status: Int, headers: [String: String], rest: [UInt8]) {
    var buf: [UInt8] = []
    let marker: [UInt8] = [13, 10, 13, 10]
    while true {
        if let end = buf.firstRange(of: marker) {
            let head = String(decoding: buf[..<end.lowerBound], as: UTF8.self)
            let rest = Array(buf[end.upperBound...])
            var lines = head.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst()
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let status = Int(parts[1]) else {
                throw RealtimeTestError("bad HTTP status line: \(statusLine)")
            }
            var headers: [String: String] = [:]
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                headers[name] = headers[name].map { $0 + ", " + value } ?? value
            }
            return (status, headers, rest)
        }
        switch socket.receive() {
        case let .bytes(b): buf += b
        case .end: throw RealtimeTestError("connection closed before the HTTP response head ended (got \(buf.count) bytes: \(String(decoding: buf, as: UTF8.self)))")
        case let .failed(e): throw RealtimeTestError("reading the HTTP response head failed: \(e)")
        }
        if buf.count > 1 << 20 { throw RealtimeTestError("HTTP response head over 1 MiB") }
    }
}

// MARK: - SHA-1 (for Sec-WebSocket-Accept)

enum TestSHA1 {
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
        var msg = message
        let bitLength = UInt64(message.count) * 8
        msg.append(0x80)
        while msg.count % 64 != 56 { msg.append(0) }
        for i in (0..<8).reversed() { msg.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: msg.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + 4 * i
                w[i] = UInt32(msg[j]) << 24 | UInt32(msg[j + 1]) << 16 | UInt32(msg[j + 2]) << 8 | UInt32(msg[j + 3])
            }
            for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let f: UInt32, k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                default: f = b ^ c ^ d; k = 0xCA62_C1D6
                }
                let t = rotl(a, 5) &+ f &+ e &+ k &+ w[i]
                (e, d, c, b, a) = (d, c, rotl(b, 30), a, t)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
        }
        return h.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
    }
}
