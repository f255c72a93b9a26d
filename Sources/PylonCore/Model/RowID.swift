import Foundation

/// Row ids: 32 hex digits of Unix time in nanoseconds, then 8 hex digits of a process-wide
/// counter (pylon-core.md §0.2). Sorts in creation order within a process.
public enum RowID {
    private static let counter = AtomicCounter()

    public static func generate() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let nanos = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        let n = counter.next()
        return hex(UInt64(0), 16) + hex(nanos, 16) + hex(UInt64(n & 0xFFFF_FFFF), 8)
    }

    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes` (two digits per byte).
    package static func hex<Bytes: Sequence>(bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    package static func hex(_ v: UInt64, _ width: Int) -> String {
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var x = v
        var i = width - 1
        while i >= 0 {
            out[i] = digits[Int(x & 0xF)]
            x >>= 4
            i -= 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension RowID {
    /// An id a client chose (an imported row's, a shard's, a subscriber's) that works
    /// everywhere an id goes: 1 to 128 of letters, digits, `_`, `-`, `.`, `:` and `@`, and not
    /// `.` or `..` (which clients fold away as path steps). Such an id needs no escaping in a
    /// URL path, a log line or a key, so every route that takes it in its path can reach it.
    package static func isAddressable(_ s: some StringProtocol) -> Bool {
        let u = s.utf8
        guard !u.isEmpty, u.count <= 128, s != ".", s != ".." else { return false }
        return u.allSatisfy {
            ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 || $0 == 46 || $0 == 58 || $0 == 64
        }
    }

    /// What `isAddressable` allows, for error messages.
    package static let addressableRule = "1 to 128 of letters, digits, '_', '-', '.', ':' and '@' (not \".\" or \"..\")"
}
