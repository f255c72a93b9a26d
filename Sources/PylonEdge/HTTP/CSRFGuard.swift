import Foundation
import HTTPTypes
import PylonCore

/// Refuses cross-site requests a browser could be made to send (pylon-core.md §0.4 step 4).
///
/// Every request that changes something (any method but GET, HEAD and OPTIONS) without an
/// `Authorization: Bearer` token and with an `Origin` — or, when a browser sent none, a
/// `Referer` — must come from a trusted origin or the host's own (`Origin` equal to the
/// request's `Host`: a page the host serves itself); otherwise it is answered 403
/// `CSRF_REJECTED`, as in Pylon. That covers the session cookie, which a browser attaches
/// to any site's request by itself, and also requests with no credential: without the check
/// any site could sign a visitor's browser into the attacker's account (login CSRF: a form
/// posting the attacker's password or code gets the session cookie set). Unlike Pylon, a
/// cookie request with neither header is refused too: browsers send `Origin` on every
/// cross-site POST, but not every client that can carry a cookie does, and a
/// server-to-server caller has no reason to use the cookie rather than
/// `Authorization: Bearer`. A bearer token is never attached by a browser on its own, so
/// bearer requests are not checked, nor are requests with neither credential nor origin.
package struct CSRFGuard: Sendable {
    /// Normalized trusted origins (`scheme://host[:port]`, lowercased); nil: every origin
    /// is trusted (`*`, the --dev default), so nothing is checked.
    let trusted: Set<String>?
    let cookie: SessionCookie

    /// `origins` as configured (`*` anywhere: all; a URL with a path counts as its origin;
    /// entries are normalized, empty ones dropped).
    init(origins: [String], cookie: SessionCookie) {
        let list = origins.map { Self.origin(ofURL: $0) ?? Self.normalize($0) }.filter { !$0.isEmpty }
        trusted = list.contains("*") ? nil : Set(list)
        self.cookie = cookie
    }

    /// nil when `head` may go on; else the 403 to answer with.
    func check(_ head: HTTPRequest) -> HostError? {
        guard let trusted else { return nil }
        switch head.method {
        case .get, .head, .options: return nil
        default: break
        }
        let fields = head.headerFields
        let credential = RouteContext.credential(fields, cookie: cookie)
        if credential?.fromCookie == false { return nil } // a bearer token
        let byCookie = credential != nil
        // A provider posting its answer (`response_mode=form_post`) comes from its own
        // origin; that flow is bound to the browser that began it (state and cookie).
        if !byCookie, head.path?.hasPrefix(Self.oauthCallbackPrefix) == true { return nil }
        guard let claimed = Self.claimedOrigin(fields) else {
            return byCookie ? Self.rejected("authenticated by the session cookie", "it has neither an Origin nor a Referer header") : nil
        }
        if Self.trusts(trusted, claimed, authority: head.authority) { return nil }
        return Self.rejected(byCookie ? "authenticated by the session cookie" : "without a bearer token", "its origin \(claimed) is not trusted")
    }

    /// Whether a request may be authenticated by the session cookie where no write check
    /// runs: a WebSocket handshake, which a browser sends with cookies from any page of the
    /// same site and whose socket then reads the user's data and sends as them. Browsers
    /// always send `Origin` there; it must be trusted or the host's own, as for a write.
    func admitsCookie(_ fields: HTTPFields, authority: String?) -> Bool {
        guard let trusted else { return true }
        guard let claimed = Self.claimedOrigin(fields) else { return false }
        return Self.trusts(trusted, claimed, authority: authority)
    }

    /// Whether a GET that acts for its caller (a shard stream, which takes the caller's
    /// place in the shard) may be authenticated by the session cookie. A browser attaches
    /// the cookie to a link or a form from any site, and sends no `Origin` with such a
    /// navigation, so: an `Origin` decides as for a write; without one, `Sec-Fetch-Site:
    /// cross-site` refuses; a `Referer` must then be trusted; a request with none of them
    /// (a same-origin `EventSource` may send only `Sec-Fetch-Site: same-origin`, a client
    /// that is no browser nothing) is admitted.
    func admitsCookieOnGet(_ fields: HTTPFields, authority: String?) -> Bool {
        guard let trusted else { return true }
        if let origin = fields[.origin] { return Self.trusts(trusted, Self.normalize(origin), authority: authority) }
        if fields[Self.fetchSite]?.lowercased() == "cross-site" { return false }
        guard let claimed = Self.claimedOrigin(fields) else { return true }
        return Self.trusts(trusted, claimed, authority: authority)
    }

    static let fetchSite = HTTPField.Name("Sec-Fetch-Site")!

    /// The page a request says it comes from: `Origin`, else the origin of `Referer`.
    private static func claimedOrigin(_ fields: HTTPFields) -> String? {
        if let origin = fields[.origin] { return normalize(origin) }
        return fields[.referer].flatMap(origin(ofURL:))
    }

    private static func trusts(_ trusted: Set<String>, _ claimed: String, authority: String?) -> Bool {
        trusted.contains(claimed) || isSameOrigin(claimed, authority: authority)
    }

    static let oauthCallbackPrefix = "/api/auth/callback/"

    private static func rejected(_ what: String, _ why: String) -> HostError {
        HostError(status: 403, code: "CSRF_REJECTED",
                  message: "refused a request \(what) because \(why): send the token as Authorization: Bearer instead, or add the page's origin to PYLON_TRUSTED_ORIGINS (or the manifest's auth.trusted_origins)")
    }

    /// `Origin: scheme://HOST` where HOST is the request's own `Host`.
    static func isSameOrigin(_ origin: String, authority: String?) -> Bool {
        guard let authority, !authority.isEmpty, let sep = origin.range(of: "://") else { return false }
        return origin[sep.upperBound...] == authority.lowercased()
    }

    /// `scheme://host[:port]` of an absolute URL (a `Referer`); nil when it is not one.
    static func origin(ofURL url: String) -> String? {
        guard let sep = url.range(of: "://"), sep.lowerBound > url.startIndex else { return nil }
        let rest = url[sep.upperBound...]
        let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard end > rest.startIndex else { return nil }
        return normalize(String(url[url.startIndex..<end]))
    }

    /// Lowercased, trimmed, without a trailing `/`.
    static func normalize(_ origin: String) -> String {
        var s = origin.trimmingCharacters(in: .whitespaces).lowercased()
        while s.hasSuffix("/") { s.removeLast() }
        return s
    }
}
