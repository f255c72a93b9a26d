#if canImport(Glibc)
import Glibc
#endif

/// One RESP connection (or the internal client that runs host calls): its input and
/// output buffers and its session state. Owned by the event-loop thread.
final class Client {
    let fd: Int32
    let id: Int64
    /// Runs commands for the host interface: no socket, always authenticated, RESP3.
    let isInternal: Bool

    // Input: bytes [start, end) of `inBuf` are unparsed.
    var inBuf: UnsafeMutablePointer<UInt8>
    var inCap: Int
    var inStart = 0
    var inEnd = 0
    /// When the client last made progress while a command was incomplete (ms, 0 = none).
    var partialSince: Int64 = 0
    /// Input bytes the incomplete command at `inStart` needs in total (0 = unknown).
    var need = 0

    let out = ReplyBuffer()
    var authenticated: Bool
    var name: [UInt8]?
    /// Set by QUIT and protocol errors: close once the output is flushed.
    var closeAfterReply = false
    var closed = false
    /// EPOLLOUT is armed.
    var writeArmed = false
    /// Queued in the loop's pending-write list.
    var pendingWrite = false

    var inMulti = false
    var multiDirty = false
    var queued: [[[UInt8]]] = []

    var channels: Set<[UInt8]> = []
    var patterns: Set<[UInt8]> = []
    var subscriptionCount: Int { channels.count + patterns.count }

    init(fd: Int32, id: Int64, authenticated: Bool, isInternal: Bool = false) {
        self.fd = fd
        self.id = id
        self.authenticated = authenticated
        self.isInternal = isInternal
        inCap = isInternal ? 256 : 16 * 1024
        inBuf = malloc(inCap)!.assumingMemoryBound(to: UInt8.self)
        if isInternal { out.resp = 3 }
    }

    deinit { free(inBuf) }

    var unparsed: Int { inEnd - inStart }

    /// Makes room for at least `n` more bytes after `inEnd`, moving unparsed bytes to the
    /// front first.
    func reserveInput(_ n: Int) {
        if inStart > 0 {
            if inStart == inEnd {
                inStart = 0
                inEnd = 0
            } else if inCap - inEnd < n {
                memmove(inBuf, inBuf + inStart, inEnd - inStart)
                inEnd -= inStart
                inStart = 0
            }
        }
        if inCap - inEnd < n {
            var c = inCap * 2
            while c - inEnd < n { c *= 2 }
            inBuf = realloc(inBuf, c)!.assumingMemoryBound(to: UInt8.self)
            inCap = c
        }
    }

    /// Gives back a big input buffer once it is empty.
    func shrinkInputIfIdle() {
        if inStart == inEnd {
            inStart = 0
            inEnd = 0
            if inCap > 1 << 20 {
                free(inBuf)
                inCap = 16 * 1024
                inBuf = malloc(inCap)!.assumingMemoryBound(to: UInt8.self)
            }
        }
    }
}

/// The outcome of trying to parse one command from a client's input.
enum ParseResult {
    /// A command of `argc` arguments is in `argv`; `consumed` bytes of input.
    case command(argc: Int, consumed: Int)
    /// An empty line or `*0`: skip `consumed` bytes.
    case empty(consumed: Int)
    /// Wait for more bytes; at least `need` bytes of input in total are required (0 = unknown).
    case incomplete(need: Int)
    /// A protocol error (the message after "-ERR ").
    case error(String)
}

/// Parses RESP requests (multibulk, and inline commands as redis-cli and telnet send
/// them) straight out of a client's buffer. Arguments point into that buffer (or, for
/// inline commands with escapes, into `scratch`); nothing is copied per argument.
struct RequestParser {
    var argv: UnsafeMutablePointer<Arg>
    var argvCap: Int
    var scratch: UnsafeMutablePointer<UInt8>
    var scratchCap: Int
    var maxBulk: Int
    var maxMultibulk: Int
    /// Most bytes one request may take in all (`CacheConfig.queryLimit`).
    var maxQuery: Int

    static let inlineMax = 64 * 1024

    init(maxBulk: Int, maxMultibulk: Int, maxQuery: Int) {
        argvCap = 64
        argv = .allocate(capacity: argvCap)
        scratchCap = 1024
        scratch = .allocate(capacity: scratchCap)
        self.maxBulk = maxBulk
        self.maxMultibulk = maxMultibulk
        self.maxQuery = maxQuery
    }

    mutating func ensureArgv(_ n: Int) {
        if n <= argvCap { return }
        var c = argvCap
        while c < n { c *= 2 }
        argv.deallocate()
        argv = .allocate(capacity: c)
        argvCap = c
    }

    /// Finds "\r\n" in [from, end); returns the index of '\r' or -1.
    @inline(__always)
    private static func findCRLF(_ p: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i < end {
            guard let hit = memchr(p + i, 13, end - i) else { return -1 }
            let at = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - p
            if at + 1 >= end { return -1 }
            if p[at + 1] == 10 { return at }
            i = at + 1
        }
        return -1
    }

    /// Parses one request at `p[0..<n]`. `authenticated` false applies Redis's small
    /// limits for unauthenticated clients.
    @inline(__always)
    mutating func parse(_ p: UnsafePointer<UInt8>, _ n: Int, authenticated: Bool) -> ParseResult {
        if n == 0 { return .incomplete(need: 0) }
        if p[0] != 42 { return parseInline(p, n) }
        let nl = Self.findCRLF(p, 1, n)
        if nl < 0 {
            return n > Self.inlineMax ? .error("Protocol error: too big mbulk count string") : .incomplete(need: 0)
        }
        guard let count = parseInt64(p + 1, nl - 1) else { return .error("Protocol error: invalid multibulk length") }
        guard count <= Int64(maxMultibulk) else { return .error(Self.overLimit("multibulk length", count, "arguments", "max_multibulk", maxMultibulk)) }
        if count > 10 && !authenticated { return .error("Protocol error: unauthenticated multibulk length") }
        var pos = nl + 2
        if count <= 0 { return .empty(consumed: pos) }
        let argc = Int(count)
        ensureArgv(argc)
        for k in 0..<argc {
            if pos >= n { return .incomplete(need: 0) }
            if p[pos] != 36 {
                let c = p[pos]
                let shown = c >= 32 && c < 127 ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
                return .error("Protocol error: expected '$', got '\(shown)'")
            }
            let e = Self.findCRLF(p, pos + 1, n)
            if e < 0 {
                return n - pos > Self.inlineMax ? .error("Protocol error: too big bulk count string") : .incomplete(need: 0)
            }
            guard let len = parseInt64(p + pos + 1, e - pos - 1), len >= 0 else { return .error("Protocol error: invalid bulk length") }
            // Refused from the length header, before any of the body is read or buffered.
            guard len <= Int64(maxBulk) else { return .error(Self.overLimit("bulk length", len, "bytes", "max_bulk_bytes", maxBulk)) }
            if len > 16384 && !authenticated { return .error("Protocol error: unauthenticated bulk length") }
            let start = e + 2
            let stop = start + Int(len) + 2
            if stop > maxQuery {
                return .error("Protocol error: request too large: its arguments add up to more than \(maxQuery) bytes "
                    + "(max_query_bytes); send fewer or smaller arguments per command")
            }
            if stop > n { return .incomplete(need: stop) }
            argv[k] = Arg(ptr: p + start, len: Int(len))
            pos = stop
        }
        return .command(argc: argc, consumed: pos)
    }

    /// The error for a length header over its limit: Redis' message first (clients match
    /// on it), then the limit and the setting that raises it.
    static func overLimit(_ what: String, _ asked: Int64, _ unit: String, _ setting: String, _ limit: Int) -> String {
        "Protocol error: invalid \(what): \(asked) \(unit) is over the limit of \(limit) (the cache plugin's \(setting)); "
            + "send less per command, or raise \(setting)"
    }

    /// An inline command: one line, split on spaces, with "double" (escapes) and
    /// 'single' quotes as Redis's `sdssplitargs`.
    private mutating func parseInline(_ p: UnsafePointer<UInt8>, _ n: Int) -> ParseResult {
        guard let hit = memchr(p, 10, n) else {
            return n > Self.inlineMax ? .error("Protocol error: too big inline request") : .incomplete(need: 0)
        }
        let nl = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - p
        var lineEnd = nl
        if lineEnd > 0 && p[lineEnd - 1] == 13 { lineEnd -= 1 }
        if lineEnd + 1 > scratchCap {
            scratch.deallocate()
            scratchCap = lineEnd + 1
            scratch = .allocate(capacity: scratchCap)
        }
        var argc = 0
        var w = 0
        var i = 0
        var starts: [(Int, Int)] = []
        func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 11 || c == 12 || c == 13 }
        func hex(_ c: UInt8) -> Int? {
            switch c {
            case 48...57: return Int(c - 48)
            case 97...102: return Int(c - 87)
            case 65...70: return Int(c - 55)
            default: return nil
            }
        }
        while true {
            while i < lineEnd && isSpace(p[i]) { i += 1 }
            if i >= lineEnd { break }
            let begin = w
            var inDouble = false, inSingle = false
            var done = false
            while !done {
                if inDouble {
                    if i >= lineEnd { return .error("Protocol error: unbalanced quotes in request") }
                    let c = p[i]
                    if c == 92 && i + 3 < lineEnd && p[i + 1] == 120, let h1 = hex(p[i + 2]), let h2 = hex(p[i + 3]) {
                        scratch[w] = UInt8(h1 * 16 + h2); w += 1; i += 4
                    } else if c == 92 && i + 1 < lineEnd {
                        let e = p[i + 1]
                        let out: UInt8 = switch e {
                        case 110: 10
                        case 114: 13
                        case 116: 9
                        case 98: 8
                        case 97: 7
                        default: e
                        }
                        scratch[w] = out; w += 1; i += 2
                    } else if c == 34 {
                        // Closing quote must be followed by a space or the end.
                        if i + 1 < lineEnd && !isSpace(p[i + 1]) { return .error("Protocol error: unbalanced quotes in request") }
                        i += 1
                        done = true
                    } else {
                        scratch[w] = c; w += 1; i += 1
                    }
                } else if inSingle {
                    if i >= lineEnd { return .error("Protocol error: unbalanced quotes in request") }
                    let c = p[i]
                    if c == 92 && i + 1 < lineEnd && p[i + 1] == 39 {
                        scratch[w] = 39; w += 1; i += 2
                    } else if c == 39 {
                        if i + 1 < lineEnd && !isSpace(p[i + 1]) { return .error("Protocol error: unbalanced quotes in request") }
                        i += 1
                        done = true
                    } else {
                        scratch[w] = c; w += 1; i += 1
                    }
                } else {
                    if i >= lineEnd { done = true; break }
                    let c = p[i]
                    if isSpace(c) { done = true } else if c == 34 && w == begin { inDouble = true; i += 1 }
                    else if c == 39 && w == begin { inSingle = true; i += 1 }
                    else { scratch[w] = c; w += 1; i += 1 }
                }
            }
            starts.append((begin, w - begin))
            argc += 1
        }
        if argc == 0 { return .empty(consumed: nl + 1) }
        ensureArgv(argc)
        for (k, s) in starts.enumerated() { argv[k] = Arg(ptr: UnsafePointer(scratch + s.0), len: s.1) }
        return .command(argc: argc, consumed: nl + 1)
    }
}
