import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PylonCore

/// The app's web page (`StaticSite`): GET and HEAD of any path the API does not own are
/// answered from the site's folder by Hummingbird's `FileMiddleware` (content types,
/// `ETag` / `If-None-Match`, byte ranges, `index.html` for folders). Files are revalidated
/// on every use (`Cache-Control: no-cache`), so a deploy shows at once.
///
/// What it never serves: paths under the API's prefixes (`/api`, `/metrics`, `/health`,
/// `/studio` — they get the API's JSON 404), names starting with a dot (`.env`, `.git/`)
/// except a first segment `.well-known` (RFC 8615: ACME challenges, app-site associations,
/// `security.txt`; dot-names below it are still refused), `..` anywhere, and files whose
/// real path (symbolic links resolved) leads outside the folder. With `spa`, a page request
/// (`Accept: text/html`) for a path with no file extension that names no file gets
/// `index.html`, so client-side routes survive a reload; a missing `/app.js` stays a 404.
struct StaticSiteResponder: Sendable {
    let site: StaticSite
    let files: FileMiddleware<PylonRequestContext, LocalFileSystem>

    init(site: StaticSite, logger: Logger) {
        self.site = site
        files = FileMiddleware(site.dir, cacheControl: CacheControl([(MediaType(type: .any), [.noCache])]),
                               searchForIndexHtml: true, logger: logger)
    }

    /// Path prefixes the API owns: a miss there is the API's 404, never a page.
    static let apiPrefixes = ["/api", "/metrics", "/health", "/studio"]

    func respond(_ request: Request, _ context: PylonRequestContext) async throws -> Response {
        let path = request.uri.path
        guard Self.servable(path), insideFolder(path) else { throw HTTPError(.notFound) }
        do {
            return try await files.handle(request, context: context) { _, _ in throw HTTPError(.notFound) }
        } catch let e as HTTPError where e.status == .notFound && site.spa && Self.isPageRequest(request) {
            var head = request.head
            head.path = "/index.html"
            return try await files.handle(Request(head: head, body: .init(buffer: .init())), context: context) { _, _ in
                throw HTTPError(.notFound)
            }
        }
    }

    /// Not an API path, no dot-name (but a leading `/.well-known/`), no `..`, no NUL, and
    /// valid percent-encoding.
    static func servable(_ rawPath: String) -> Bool {
        guard let path = rawPath.removingPercentEncoding, !path.contains("\0") else { return false }
        for prefix in apiPrefixes where path == prefix || path.hasPrefix(prefix + "/") { return false }
        var segments = path.split(separator: "/")[...]
        if segments.first.map(String.init) == Self.wellKnown, path.hasPrefix("/" + Self.wellKnown) { segments = segments.dropFirst() }
        return !segments.contains { $0.hasPrefix(".") }
    }

    /// The one dot-folder served (RFC 8615), and only at the root.
    static let wellKnown = ".well-known"

    /// A browser navigating: it asks for HTML, and the last path segment has no extension.
    static func isPageRequest(_ request: Request) -> Bool {
        let accept = request.headers[.accept] ?? ""
        let last = request.uri.path.split(separator: "/").last ?? ""
        return accept.contains("text/html") && !last.contains(".")
    }

    /// False when the path names a file whose real location is outside the site's folder
    /// (a symbolic link out of it). A path that names nothing passes: it is a 404 or a page.
    func insideFolder(_ rawPath: String) -> Bool {
        guard let path = rawPath.removingPercentEncoding else { return false }
        guard let real = realpath(site.dir + path, nil) else { return true }
        defer { free(real) }
        let resolved = String(cString: real)
        return resolved == site.dir || resolved.hasPrefix(site.dir + "/")
    }
}

extension RouteContext {
    /// `GET /` and `GET /**` (HEAD too) from the app's static folder, when one is set. The
    /// router tries every API route first; these catch what is left.
    func addStaticSiteRoutes(_ router: Router<PylonRequestContext>, _ site: StaticSite, logger: Logger) {
        let responder = StaticSiteResponder(site: site, logger: logger)
        router.get("/") { request, context in try await responder.respond(request, context) }
        router.get("/**") { request, context in try await responder.respond(request, context) }
    }
}
