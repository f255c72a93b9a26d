import Foundation
import NIOPosix

/// The IMF-fixdate of the current second ("Mon, 23 Nov 2026 18:30:00 GMT") for every
/// answer's `Date`, formatted at most once per second per thread: each thread keeps its own
/// copy, so answers on different event loops share no lock.
enum HTTPDate {
    /// Touched only by the thread it belongs to.
    private final class Cache: @unchecked Sendable {
        var second: time_t = 0
        var text = ""
    }

    private static let cache = ThreadSpecificVariable<Cache>()

    static func now() -> String {
        let t = time(nil)
        let c: Cache
        if let mine = cache.currentValue {
            c = mine
        } else {
            c = Cache()
            cache.currentValue = c
        }
        if t != c.second {
            c.text = format(t)
            c.second = t
        }
        return c.text
    }

    static func format(_ t: time_t) -> String {
        var tm = tm()
        var copy = t
        gmtime_r(&copy, &tm)
        var buf = [CChar](repeating: 0, count: 40)
        let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tm)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
