import HummingbirdCore

/// The router's own reading of a request target, for the few places that recognise a route
/// before the router runs (`RouteContext.streamedBodyLimit`). Hummingbird's router takes
/// `URI(target).path` (everything before `?`), splits it at `/` and drops empty pieces, with
/// no percent-decoding and case kept: `/api/files/upload/`, `/api/files//upload` and
/// `//api/files/upload` all reach the upload handler. Recognising only the exact spelling
/// let the others through with another route's limits, so this follows the router's rule.
enum RoutePath {
    /// Whether `target` (a request's `:path`, query and all) reaches the route `route`, a
    /// literal path such as `/api/files/upload` (no parameters).
    static func matches(_ target: String, _ route: StaticString) -> Bool {
        let r = UnsafeBufferPointer(start: route.utf8Start, count: route.utf8CodeUnitCount)
        // By bytes: every POST passes here (a String split walked Characters, about 3% of a
        // function call's instructions). A target not in origin form is parsed as the router does.
        guard target.utf8.first == UInt8(ascii: "/") else { return same(URI(target).path.utf8, r) }
        return same(target.utf8.prefix { $0 != UInt8(ascii: "?") }, r)
    }

    /// Whether `path` and `route` have the same non-empty `/`-separated pieces.
    private static func same<P: Collection, R: Collection>(_ path: P, _ route: R) -> Bool
    where P.Element == UInt8, R.Element == UInt8 {
        var a = Pieces(path), b = Pieces(route)
        while true {
            switch (a.next(), b.next()) {
            case (nil, nil): return true
            case let (x?, y?) where x.elementsEqual(y): continue
            default: return false
            }
        }
    }

    /// The non-empty `/`-separated pieces of a path, without allocating (Hummingbird's
    /// `SplitStringSequence`, over bytes).
    private struct Pieces<C: Collection>: IteratorProtocol where C.Element == UInt8 {
        let base: C
        var at: C.Index

        init(_ base: C) {
            self.base = base
            at = base.startIndex
        }

        mutating func next() -> C.SubSequence? {
            let slash = UInt8(ascii: "/")
            while at < base.endIndex, base[at] == slash { base.formIndex(after: &at) }
            guard at < base.endIndex else { return nil }
            let start = at
            while at < base.endIndex, base[at] != slash { base.formIndex(after: &at) }
            return base[start..<at]
        }
    }
}
