import Foundation
import HTTPTypes
import Hummingbird
import PylonCore

/// Every `Set-Cookie` the host sends for the session goes through these two functions, so
/// each sign-in, refresh and sign-out carries the configured name and attributes
/// (`SessionCookie`, from `PYLON_COOKIE_*`).
extension RouteContext {
    /// `response` with the session cookie for `token`, which ends at `expires` (0: in 30
    /// days). As Pylon, only when the request came from a page (it has an `Origin`): a
    /// client that reads the token from the body has no use for it. `always`: a browser
    /// navigation that has no `Origin` (a magic link opened, the OAuth redirect back).
    func withSessionCookie(_ req: Request, _ response: Response, token: String, expires: Int64, always: Bool = false) -> Response {
        guard always || req.headers[.origin] != nil else { return response }
        let maxAge = expires == 0 ? 2_592_000 : max(0, expires - Int64(Date().timeIntervalSince1970))
        var r = response
        r.headers.append(HTTPField(name: .setCookie, value: config.sessionCookie.setting(token, maxAge: maxAge)))
        return r
    }

    /// `response` with the session cookie removed (sign-out, signing out everywhere, account
    /// deletion): `Max-Age=0` with the same name, Path and Domain; and the legacy
    /// `pylon_session` too when the request carried one, or the browser would still be
    /// signed in by it once the configured cookie is gone.
    func withoutSessionCookie(_ req: Request, _ response: Response) -> Response {
        let cookie = config.sessionCookie
        var r = response
        r.headers.append(HTTPField(name: .setCookie, value: cookie.clearing))
        if let legacy = cookie.clearingLegacy, cookie.legacyToken(inCookieHeaders: req.headers[values: .cookie]) != nil {
            r.headers.append(HTTPField(name: .setCookie, value: legacy))
        }
        return r
    }
}
