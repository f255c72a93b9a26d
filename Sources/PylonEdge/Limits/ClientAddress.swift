import HTTPTypes
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client a request is counted against by the rate limiters (`RequestRateLimit`,
/// `AuthRateLimiter`): an IPv4 address, or the /64 prefix of an IPv6 address (one host
/// usually owns a whole /64, so counting single IPv6 addresses would let it rotate past any
/// limit). Sixteen bytes, built without allocating, so a per-request limiter can key on it.
struct ClientAddress: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    /// Requests whose peer address is unknown (not an IP socket) share this one.
    static let unknown = ClientAddress(high: .max, low: .max)

    /// IPv4 `a.b.c.d` (network byte order in `ip`) as `::ffff:a.b.c.d`, the IPv4-mapped form,
    /// so that the same client reached over IPv4 or as a mapped IPv6 address counts once.
    static func v4(_ ip: UInt32) -> ClientAddress {
        ClientAddress(high: 0, low: 0x0000_FFFF_0000_0000 | UInt64(UInt32(bigEndian: ip)))
    }

    /// An IPv6 address from its 16 bytes: IPv4-mapped addresses as `v4`, others by their /64.
    static func v6(_ bytes: UnsafeRawBufferPointer) -> ClientAddress {
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(bytes[i]) }
        if high == 0 && low >> 32 == 0xFFFF { return ClientAddress(high: 0, low: low) }
        return ClientAddress(high: high, low: 0)
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The socket peer's address (`.unknown` for none or a Unix socket).
    init(peer: SocketAddress?) {
        switch peer {
        case let .v4(a)?:
            self = Self.v4(a.address.sin_addr.s_addr)
        case let .v6(a)?:
            var in6 = a.address.sin6_addr
            self = withUnsafeBytes(of: &in6) { Self.v6($0) }
        default:
            self = .unknown
        }
    }

    /// The client as Pylon resolves it (pylon-aux.md §0.4): with `trustHops` 0 the socket peer;
    /// with N > 0 the N-th entry of `X-Forwarded-For` counted from the right (the address the
    /// N-th proxy in front of the host saw), when there are that many and it is an IP
    /// address; otherwise the socket peer. Entries further left are the client's own claims
    /// and are never believed.
    static func resolve(peer: SocketAddress?, headers: HTTPFields, trustHops: Int) -> ClientAddress {
        if trustHops > 0, let forwarded = forwardedFor(headers, hop: trustHops), let parsed = parse(forwarded) {
            return parsed
        }
        return ClientAddress(peer: peer)
    }

    /// The `hop`-th entry from the right of all `X-Forwarded-For` fields taken as one list.
    private static func forwardedFor(_ headers: HTTPFields, hop: Int) -> Substring? {
        // The subscript joins repeated fields with ", " in order: one comma-separated list.
        headers[Self.xForwardedFor].flatMap { entry($0, fromRight: hop) }
    }

    /// The `hop`-th entry (1: the last) of a comma-separated `list`, trimmed; nil when it has
    /// fewer.
    static func entry(_ list: String, fromRight hop: Int) -> Substring? {
        var seen = 0
        var end = list.endIndex
        var i = list.endIndex
        while i > list.startIndex {
            let before = list.index(before: i)
            if list[before] == "," {
                seen += 1
                if seen == hop { return trimmed(list[i..<end]) }
                end = before
            }
            i = before
        }
        return seen + 1 == hop ? trimmed(list[list.startIndex..<end]) : nil
    }

    private static func trimmed(_ s: Substring) -> Substring {
        var t = s.drop { $0 == " " || $0 == "\t" }
        while let last = t.last, last == " " || last == "\t" { t = t.dropLast() }
        return t
    }

    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!

    /// An address written as text: dotted-quad IPv4 or any IPv6 form `inet_pton` takes
    /// (brackets allowed); nil for anything else (a port, a host name, garbage).
    static func parse(_ text: Substring) -> ClientAddress? {
        var s = text
        if s.hasPrefix("["), s.hasSuffix("]") { s = s.dropFirst().dropLast() }
        guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
        return String(s).withCString { c -> ClientAddress? in
            var v4 = in_addr()
            if inet_pton(AF_INET, c, &v4) == 1 { return Self.v4(v4.s_addr) }
            var v6 = in6_addr()
            if inet_pton(AF_INET6, c, &v6) == 1 { return withUnsafeBytes(of: &v6) { Self.v6($0) } }
            return nil
        }
    }
}
