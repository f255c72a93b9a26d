#if canImport(Glibc)
import Glibc
#endif

/// A client's pending output: replies encoded in RESP2 or RESP3 (per `resp`), appended
/// by commands and drained to the socket by the event loop. Grows as needed up to `limit`
/// bytes pending: a write past it (or one the allocator refuses) drops the pending output
/// and sets `overflowed`, and the loop disconnects the client. Checked at every write, so
/// a pipeline or a transaction of large replies never grows the buffer past the limit.
final class ReplyBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    /// Bytes written so far.
    private(set) var count = 0
    /// Bytes already sent to the socket (a prefix of `count`).
    var sent = 0
    /// 2 or 3.
    var resp = 2
    /// The most bytes pending (written, not sent) the buffer holds (`max_output_bytes`).
    var limit = Int.max
    /// A write went past `limit` or could not be allocated: the output is dropped and
    /// nothing more is written; the client is to be closed.
    private(set) var overflowed = false

    init(capacity: Int = 16 * 1024) {
        self.capacity = capacity
        base = malloc(capacity)!.assumingMemoryBound(to: UInt8.self)
    }

    deinit { free(base) }

    var pending: Int { count - sent }

    /// Forgets sent bytes; shrinks a buffer that grew large once it is empty.
    func compact() {
        if sent == count {
            sent = 0
            count = 0
            if capacity > 1 << 20 {
                free(base)
                capacity = 16 * 1024
                base = malloc(capacity)!.assumingMemoryBound(to: UInt8.self)
            }
        } else if sent > 0 && sent >= capacity / 2 {
            memmove(base, base + sent, count - sent)
            count -= sent
            sent = 0
        }
    }

    /// Takes the unsent bytes out (used for replies to host calls); a reply that overflowed
    /// comes out empty, and the buffer takes the next one.
    func take() -> [UInt8] {
        let a = Array(UnsafeBufferPointer(start: base + sent, count: count - sent))
        sent = 0
        count = 0
        overflowed = false
        return a
    }

    /// Room for `n` more bytes, or false (and `overflowed`) when they would pass `limit` or
    /// cannot be allocated; every write asks first.
    @inline(__always) private func reserve(_ n: Int) -> Bool {
        if overflowed { return false }
        if n > limit - (count - sent) { return overflow() }
        if count + n > capacity { return grow(count + n) }
        return true
    }

    private func overflow() -> Bool {
        overflowed = true
        sent = 0
        count = 0
        return false
    }

    private func grow(_ need: Int) -> Bool {
        var c = capacity
        while c < need { c = c > Int.max / 2 ? need : c * 2 }
        guard let grown = realloc(base, c) else { return overflow() }
        base = grown.assumingMemoryBound(to: UInt8.self)
        capacity = c
        return true
    }

    @inline(__always) func raw(_ p: UnsafePointer<UInt8>, _ n: Int) {
        guard reserve(n) else { return }
        memcpy(base + count, p, n)
        count += n
    }

    @inline(__always) func raw(_ s: StaticString) {
        raw(s.utf8Start, s.utf8CodeUnitCount)
    }

    @inline(__always) private func byte(_ b: UInt8) {
        guard reserve(1) else { return }
        base[count] = b
        count += 1
    }

    @inline(__always) private func crlf() {
        guard reserve(2) else { return }
        base[count] = 13
        base[count + 1] = 10
        count += 2
    }

    @inline(__always) private func prefixed(_ type: UInt8, _ n: Int64) {
        guard reserve(24) else { return }
        base[count] = type
        count += 1
        count += formatInt64(n, base + count)
        base[count] = 13
        base[count + 1] = 10
        count += 2
    }

    // MARK: - Reply types

    @inline(__always) func ok() { raw("+OK\r\n") }

    /// `+text` (text must not contain CR/LF).
    func simple(_ text: StaticString) {
        byte(43)
        raw(text)
        crlf()
    }

    func simple(_ text: [UInt8]) {
        byte(43)
        text.withUnsafeBufferPointer { if $0.count > 0 { raw($0.baseAddress!, $0.count) } }
        crlf()
    }

    /// An error line; `text` includes the code (e.g. "ERR syntax error", "WRONGTYPE ...").
    func error(_ text: String) {
        byte(45)
        var t = text
        t.withUTF8 { b in
            // CR/LF inside an error would break framing (Redis replaces them too).
            for c in b { byte(c == 13 || c == 10 ? 32 : c) }
        }
        crlf()
    }

    func error(_ text: StaticString) {
        byte(45)
        raw(text)
        crlf()
    }

    @inline(__always) func integer(_ v: Int64) { prefixed(58, v) }
    @inline(__always) func integer(_ v: Int) { prefixed(58, Int64(v)) }

    @inline(__always) func bulk(_ p: UnsafePointer<UInt8>, _ n: Int) {
        prefixed(36, Int64(n))
        guard reserve(n + 2) else { return }
        if n > 0 { memcpy(base + count, p, n) }
        count += n
        base[count] = 13
        base[count + 1] = 10
        count += 2
    }

    @inline(__always) func bulk(_ a: Arg) { bulk(a.ptr, a.len) }
    @inline(__always) func bulk(_ r: RBytes) { bulk(UnsafePointer(r.ptr), r.len) }

    func bulk(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            if let p = b.baseAddress { bulk(p, b.count) } else { raw("$0\r\n\r\n") }
        }
    }

    func bulk(_ s: String) { bulk(Array(s.utf8)) }

    /// A string value stored as an integer.
    @inline(__always) func bulk(int v: Int64) {
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &tmp) { r in
            let p = r.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let n = formatInt64(v, p)
            bulk(UnsafePointer(p), n)
        }
    }

    /// The null bulk string (`$-1` / `_`).
    @inline(__always) func null() { if resp == 3 { raw("_\r\n") } else { raw("$-1\r\n") } }
    /// The null array (`*-1` / `_`).
    @inline(__always) func nullArray() { if resp == 3 { raw("_\r\n") } else { raw("*-1\r\n") } }

    @inline(__always) func array(_ n: Int) { prefixed(42, Int64(n)) }
    /// A map of `n` pairs (RESP2: a flat array of 2n).
    func map(_ n: Int) { if resp == 3 { prefixed(37, Int64(n)) } else { prefixed(42, Int64(2 * n)) } }
    /// A set (RESP2: an array).
    func set(_ n: Int) { if resp == 3 { prefixed(126, Int64(n)) } else { prefixed(42, Int64(n)) } }
    /// An out-of-band push (RESP2: an array).
    func push(_ n: Int) { if resp == 3 { prefixed(62, Int64(n)) } else { prefixed(42, Int64(n)) } }

    /// A double (RESP3 `,`; RESP2 a bulk string), formatted as Redis 7.0 does.
    func double(_ d: Double) {
        let f = formatDouble(d)
        if resp == 3 {
            byte(44)
            f.withUnsafeBufferPointer { raw($0.baseAddress!, $0.count) }
            crlf()
        } else {
            bulk(f)
        }
    }

    /// A verbatim string (RESP3 `=` with a `txt:` prefix; RESP2 a bulk string).
    func verbatim(_ s: String) {
        if resp == 3 {
            let b = Array(s.utf8)
            prefixed(61, Int64(b.count + 4))
            raw("txt:")
            b.withUnsafeBufferPointer { if $0.count > 0 { raw($0.baseAddress!, $0.count) } }
            crlf()
        } else {
            bulk(s)
        }
    }

    /// Drops everything written after `mark` (a `count` taken earlier).
    func truncate(to mark: Int) { count = mark }
}
