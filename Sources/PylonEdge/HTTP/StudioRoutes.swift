import Crypto
import HTTPTypes
import Hummingbird
import NIOCore
import PylonCore

/// `GET /studio` and `/studio/*`: the admin studio, a single-page app built from studio/ by
/// scripts/gen-studio.py and embedded in the host (`StudioAssets`), served in every mode.
/// The page is public static content; everything it shows comes from the API, which asks
/// for the admin token as always, so serving it reveals nothing.
///
/// Files come from an in-memory table looked up by the exact path, never from the
/// filesystem, so no path can reach anything else: `/studio/assets/<name>` is one of the
/// content-hashed files or 404; a path with a dot segment, a backslash or a percent-encoded
/// dot or slash is 404 (a confused client or a probe, not a page of the app); any other
/// path under /studio is the app's own route and gets index.html (the SPA fallback). The
/// query string is ignored. Every answer carries a strict CSP (scripts and styles from this
/// origin only, no inline script, no framing), on top of the API's security headers.
extension RouteContext {
    func addStudioRoutes(_ router: Router<PylonRequestContext>) {
        for path in ["/studio", "/studio/**"] {
            router.get(RouterPath(path)) { req, _ in try StudioSite.shared.answer(req) }
        }
    }
}

/// The studio's files, prepared once: bytes, content type, strong ETag, cache policy.
struct StudioSite: Sendable {
    struct File: Sendable {
        let body: ByteBuffer
        let headers: HTTPFields
        let etag: String
    }

    static let shared = StudioSite()

    /// Pages may be framed by nobody and run only this origin's script and style; the data
    /// calls go to this origin; `blob:` links are the user exports the studio offers to save.
    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    let index: File
    /// By the path after "/studio/" (e.g. "assets/studio.0123456789ab.js").
    let assets: [String: File]

    init() {
        index = Self.file(StudioAssets.index, type: "text/html; charset=utf-8", immutable: false)
        var assets: [String: File] = [:]
        for f in StudioAssets.files { assets[f.path] = Self.file(f.body, type: f.contentType, immutable: true) }
        self.assets = assets
    }

    private static func file(_ text: String, type: String, immutable: Bool) -> File {
        let bytes = Array(text.utf8)
        var body = HTTPSupport.allocator.buffer(capacity: bytes.count)
        body.writeBytes(bytes)
        let etag = "\"" + SHA256.hash(data: bytes).prefix(12).map { String(format: "%02x", $0) }.joined() + "\""
        var h = HTTPFields()
        h[.contentType] = type
        h[.eTag] = etag
        // Hashed names change with their content: cache them for good. The page itself is
        // checked each time, so a new host build is picked up at once.
        h[.cacheControl] = immutable ? "public, max-age=31536000, immutable" : "no-cache"
        h[.contentSecurityPolicy] = contentSecurityPolicy
        return File(body: body, headers: h, etag: etag)
    }

    func answer(_ req: Request) throws -> Response {
        guard let file = lookup(req.uri.path) else {
            throw HostError(status: 404, code: "STUDIO_FILE_NOT_FOUND",
                            message: "the studio has no file at this path; open /studio")
        }
        if let match = req.headers[.ifNoneMatch],
           match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == file.etag }) {
            return Response(status: .notModified, headers: file.headers)
        }
        return Response(status: .ok, headers: file.headers, body: .init(byteBuffer: file.body))
    }

    /// The file for a request path (without its query), or nil for 404.
    func lookup(_ path: String) -> File? {
        guard path.hasPrefix("/studio") else { return nil }
        var rest = path.dropFirst("/studio".count)
        if rest.isEmpty { return index }
        guard rest.first == "/" else { return nil } // "/studiox"
        rest = rest.dropFirst()
        if rest == "assets" || rest.hasPrefix("assets/") { return assets[String(rest)] }
        return Self.isAppRoute(rest) ? index : nil
    }

    /// Whether `rest` (after "/studio/") looks like one of the app's own routes: no dot
    /// segment, no backslash, nothing percent-encoded that could stand for a dot or a slash.
    static func isAppRoute(_ rest: Substring) -> Bool {
        let lower = rest.lowercased()
        if lower.contains("\\") || lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") { return false }
        return !rest.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == "." || $0 == ".." }
    }
}
