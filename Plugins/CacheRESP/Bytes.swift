#if canImport(Glibc)
import Glibc
#endif
import CCacheRESPShim

/// An owned byte string (a key, a value, a member): `len` bytes at `ptr`, allocated with
/// `malloc` by whoever built it and released with `free()` by whoever removes it from the
/// data structure that holds it. A plain struct, so holding one costs no reference
/// counting; the data structures in this plugin free what they own explicitly.
struct RBytes {
    var ptr: UnsafeMutablePointer<UInt8>
    var len: Int

    /// Copies `len` bytes from `src`.
    @inline(__always)
    init(copying src: UnsafePointer<UInt8>, _ len: Int) {
        ptr = malloc(max(len, 1))!.assumingMemoryBound(to: UInt8.self)
        if len > 0 { memcpy(ptr, src, len) }
        self.len = len
    }

    init(copying a: Arg) { self.init(copying: a.ptr, a.len) }

    init(_ bytes: [UInt8]) {
        ptr = malloc(max(bytes.count, 1))!.assumingMemoryBound(to: UInt8.self)
        len = bytes.count
        bytes.withUnsafeBufferPointer { if $0.count > 0 { memcpy(ptr, $0.baseAddress!, $0.count) } }
    }

    /// Concatenation `self + tail` in a new allocation.
    init(concat a: Arg, _ b: Arg) {
        len = a.len + b.len
        ptr = malloc(max(len, 1))!.assumingMemoryBound(to: UInt8.self)
        if a.len > 0 { memcpy(ptr, a.ptr, a.len) }
        if b.len > 0 { memcpy(ptr + a.len, b.ptr, b.len) }
    }

    @inline(__always) func free() { Glibc.free(ptr) }
    @inline(__always) var arg: Arg { Arg(ptr: UnsafePointer(ptr), len: len) }
    var array: [UInt8] { Array(UnsafeBufferPointer(start: ptr, count: len)) }
}

/// A borrowed byte string: a command argument pointing into a client's input buffer, or
/// into an `RBytes`. Valid only while its owner is unchanged (during one command).
struct Arg {
    var ptr: UnsafePointer<UInt8>
    var len: Int

    @inline(__always) subscript(i: Int) -> UInt8 { ptr[i] }

    @inline(__always) func equals(_ o: Arg) -> Bool {
        len == o.len && (len == 0 || memcmp(ptr, o.ptr, len) == 0)
    }

    /// Case-insensitive comparison with an ASCII literal given in lower case.
    @inline(__always) func `is`(_ lower: StaticString) -> Bool {
        guard len == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for i in 0..<len where ptr[i] | 0x20 != l[i] | 0x20 { return false }
        // `| 0x20` folds letters; digits and '-' compare equal to themselves.
        return true
    }

    var array: [UInt8] { Array(UnsafeBufferPointer(start: ptr, count: len)) }
    var string: String { String(decoding: UnsafeBufferPointer(start: ptr, count: len), as: UTF8.self) }

    /// Byte-wise ordering (memcmp, then length), as Redis compares strings.
    @inline(__always) func compare(_ o: Arg) -> Int {
        let n = min(len, o.len)
        if n > 0 {
            let c = memcmp(ptr, o.ptr, n)
            if c != 0 { return Int(c) }
        }
        return len - o.len
    }
}

/// Runs `body` with `bytes` as an `Arg`.
@inline(__always)
func withArg<R>(_ bytes: [UInt8], _ body: (Arg) -> R) -> R {
    bytes.withUnsafeBufferPointer { b in
        // A non-nil pointer even for empty arrays (the length says 0).
        if let base = b.baseAddress { return body(Arg(ptr: base, len: b.count)) }
        var z: UInt8 = 0
        return withUnsafePointer(to: &z) { body(Arg(ptr: $0, len: 0)) }
    }
}

/// FNV-1a over the bytes, mixed; good enough for table indexing (keys are not attacker
/// chosen in a way that matters more for this cache than for Redis's own, seeded, hash:
/// the seed below is random per process).
nonisolated(unsafe) var hashSeed: UInt64 = pcr_random_u64() | 1

@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ hashSeed
    var i = 0
    // 8 bytes at a time, then the tail: a multiply-xorshift mix per word.
    while i + 8 <= n {
        let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
        h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        i += 8
    }
    var tail: UInt64 = 0
    var shift: UInt64 = 0
    while i < n {
        tail |= UInt64(p[i]) << shift
        shift += 8
        i += 1
    }
    h = (h ^ tail ^ UInt64(n)) &* 0xBF58_476D_1CE4_E5B9
    h ^= h >> 31
    return h
}

// MARK: - Numbers, with Redis's rules

/// Parses a decimal int64 exactly as Redis's `string2ll`: optional '-', no '+', no
/// spaces, no leading zeros (except "0" itself), no overflow.
@inline(__always)
func parseInt64(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int64? {
    if n == 0 || n > 20 { return nil }
    if n == 1 {
        let c = p[0]
        return c >= 48 && c <= 57 ? Int64(c - 48) : nil
    }
    var i = 0
    var negative = false
    if p[0] == 45 { negative = true; i = 1 }
    // First digit must be 1-9.
    guard i < n, p[i] >= 49, p[i] <= 57 else { return nil }
    var v: UInt64 = 0
    while i < n {
        let c = p[i]
        guard c >= 48, c <= 57 else { return nil }
        let (m, o1) = v.multipliedReportingOverflow(by: 10)
        let (a, o2) = m.addingReportingOverflow(UInt64(c - 48))
        if o1 || o2 { return nil }
        v = a
        i += 1
    }
    if negative {
        if v > UInt64(Int64.max) + 1 { return nil }
        return v == UInt64(Int64.max) + 1 ? Int64.min : -Int64(v)
    }
    if v > UInt64(Int64.max) { return nil }
    return Int64(v)
}

@inline(__always) func parseInt64(_ a: Arg) -> Int64? { parseInt64(a.ptr, a.len) }

/// Parses a double as Redis's `string2d`/`getDoubleFromObject`: strtod over the whole
/// string, no leading space, not NaN. "inf", "+inf", "-inf" are accepted.
func parseDouble(_ a: Arg) -> Double? {
    if a.len == 0 || a.len > 5000 { return nil }
    if isspace(Int32(a.ptr[0])) != 0 { return nil }
    var buf = [CChar](repeating: 0, count: a.len + 1)
    for i in 0..<a.len {
        if a.ptr[i] == 0 { return nil }
        buf[i] = CChar(bitPattern: a.ptr[i])
    }
    return buf.withUnsafeBufferPointer { b -> Double? in
        var end: UnsafeMutablePointer<CChar>?
        errno = 0
        let v = strtod(b.baseAddress!, &end)
        guard let end, end - UnsafeMutablePointer(mutating: b.baseAddress!) == a.len else { return nil }
        if v.isNaN { return nil }
        if errno == ERANGE && (v == .infinity || v == -.infinity || v == 0) {
            // Redis accepts a range error only when the input literally says inf.
            return nil
        }
        return v
    }
}

/// Parses a long double as Redis's `string2ld` (used by INCRBYFLOAT).
func parseLongDouble(_ a: Arg) -> Float80? {
    if a.len == 0 || a.len > 5000 { return nil }
    if isspace(Int32(a.ptr[0])) != 0 { return nil }
    var buf = [CChar](repeating: 0, count: a.len + 1)
    for i in 0..<a.len {
        if a.ptr[i] == 0 { return nil }
        buf[i] = CChar(bitPattern: a.ptr[i])
    }
    return buf.withUnsafeBufferPointer { b -> Float80? in
        var end: UnsafeMutablePointer<CChar>?
        errno = 0
        let v = strtold(b.baseAddress!, &end)
        guard let end, end - UnsafeMutablePointer(mutating: b.baseAddress!) == a.len else { return nil }
        if v.isNaN || errno == ERANGE { return nil }
        return v
    }
}

/// Writes the decimal form of `v` into `out` (at least 20 bytes); returns the length.
@inline(__always)
func formatInt64(_ v: Int64, _ out: UnsafeMutablePointer<UInt8>) -> Int {
    var u = v < 0 ? UInt64(bitPattern: 0 &- v) : UInt64(v)
    var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)
    return withUnsafeMutableBytes(of: &tmp) { raw -> Int in
        let t = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var i = 24
        repeat {
            i -= 1
            t[i] = UInt8(truncatingIfNeeded: u % 10) + 48
            u /= 10
        } while u != 0
        var n = 0
        if v < 0 { out[0] = 45; n = 1 }
        let digits = 24 - i
        memcpy(out + n, t + i, digits)
        return n + digits
    }
}

func int64Bytes(_ v: Int64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 21)
    let n = out.withUnsafeMutableBufferPointer { formatInt64(v, $0.baseAddress!) }
    return Array(out[0..<n])
}

/// Redis 7.0's `d2string`-style reply form of a double: "inf"/"-inf", integers without a
/// fraction when exactly representable, else `%.17g`.
func formatDouble(_ d: Double) -> [UInt8] {
    if d.isNaN { return Array("nan".utf8) }
    if d.isInfinite { return Array((d > 0 ? "inf" : "-inf").utf8) }
    var buf = [CChar](repeating: 0, count: 64)
    let n = buf.withUnsafeMutableBufferPointer { b in
        withVaList([d]) { vsnprintf(b.baseAddress!, 64, "%.17g", $0) }
    }
    return buf[0..<Int(n)].map { UInt8(bitPattern: $0) }
}

/// The form Redis stores after INCRBYFLOAT: `%.17Lf` with trailing zeros (and a trailing
/// dot) removed.
func formatLongDouble(_ v: Float80) -> [UInt8] {
    var buf = [CChar](repeating: 0, count: 5200)
    let n = buf.withUnsafeMutableBufferPointer { b in
        withVaList([v]) { vsnprintf(b.baseAddress!, 5200, "%.17Lf", $0) }
    }
    var s = buf[0..<Int(min(Int(n), 5199))].map { UInt8(bitPattern: $0) }
    if s.contains(46) {
        while s.last == 48 { s.removeLast() }
        if s.last == 46 { s.removeLast() }
    }
    if s == Array("-0".utf8) { s = [48] }
    return s
}
