import Foundation
import Testing

/// The admin studio at `/studio` (Sources/PylonEdge/HTTP/StudioRoutes.swift), against the
/// real host outside `--dev`: the page with its CSP, the content-hashed assets with their
/// types and caching, the single-page app's fallback, paths that try to climb out of
/// /studio (sent over a raw socket, so no client tidies them first), that the data the
/// studio shows still needs the admin token, and that the embedded bundle is the one the
/// sources build to.
@Suite("Studio: the admin app at /studio")
struct StudioTests {
    static let manifest = """
    {"manifest_version":1,"name":"studio","version":"0.1.0",
     "entities":[{"name":"Todo","fields":[{"name":"title","type":"string","optional":false,"unique":false}],"indexes":[]}],
     "routes":[],"policies":[{"name":"todos","entity":"Todo","allow":"true"}]}
    """

    /// The script and stylesheet paths the page names (`/studio/assets/…`).
    static func assetPaths(_ html: String) -> [String] {
        let pattern = try! NSRegularExpression(pattern: "(?:src|href)=\"(/studio/assets/[^\"]+)\"")
        let range = NSRange(html.startIndex..., in: html)
        return pattern.matches(in: html, range: range).compactMap { Range($0.range(at: 1), in: html).map { String(html[$0]) } }
    }

    @Test("GET /studio: the page, outside --dev, with a strict CSP and no inline script; HEAD and query strings too")
    func page() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let r = try await host.rawRequest("GET", "/studio")
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "text/html; charset=utf-8")
        let csp = r.headers["content-security-policy"] ?? ""
        for part in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"] {
            #expect(csp.contains(part), "CSP \(csp) lacks \(part)")
        }
        #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"))
        #expect(r.headers["x-frame-options"] == "DENY")
        #expect(r.headers["x-content-type-options"] == "nosniff")
        #expect(r.headers["cache-control"] == "no-cache")
        #expect(r.body.contains("<div id=\"app\""))
        // Every <script> has a src: the CSP would refuse an inline one anyway.
        let scripts = r.body.components(separatedBy: "<script").dropFirst()
        #expect(!scripts.isEmpty && scripts.allSatisfy { $0.prefix(while: { $0 != ">" }).contains("src=") })
        #expect(!r.body.contains("http://") && !r.body.contains("https://"), "no CDN, no external font")

        let again = try await host.rawRequest("GET", "/studio/?tab=1&x=%00")
        #expect(again.status == 200 && again.body == r.body)
        let head = try await host.rawRequest("HEAD", "/studio")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.headers["content-type"] == "text/html; charset=utf-8")
        // The page's ETag makes a reload cheap.
        let etag = try #require(r.headers["etag"])
        let cached = try await host.rawRequest("GET", "/studio", headers: ["If-None-Match": etag])
        #expect(cached.status == 304 && cached.body.isEmpty)
        // Left out of the API document on purpose (OpenAPIDocument says why).
        let doc = try await host.request("GET", "/api/openapi.json")
        #expect(!(doc.json["paths"].object ?? [:]).keys.contains { $0.hasPrefix("/studio") })
    }

    @Test("The assets: content types, immutable caching by hashed name, ETag → 304, unknown asset 404")
    func assets() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let html = try await host.rawRequest("GET", "/studio").body
        let paths = Self.assetPaths(html)
        #expect(paths.count == 2, "\(html)")
        var types: Set<String> = []
        for path in paths {
            let r = try await host.rawRequest("GET", path + "?v=ignored")
            #expect(r.status == 200, "\(path): \(r.status)")
            #expect(!r.body.isEmpty)
            types.insert(r.headers["content-type"] ?? "")
            #expect(r.headers["cache-control"] == "public, max-age=31536000, immutable")
            #expect(r.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
            let etag = try #require(r.headers["etag"])
            #expect(try await host.rawRequest("GET", path, headers: ["If-None-Match": "\"other\", \(etag)"]).status == 304)
            #expect(try await host.rawRequest("HEAD", path).status == 200)
        }
        #expect(types == ["text/javascript; charset=utf-8", "text/css; charset=utf-8"])
        for missing in ["/studio/assets/nope.js", "/studio/assets/", "/studio/assets"] {
            let r = try await host.request("GET", missing)
            #expect(r.status == 404, "\(missing)")
            #expect(r.json.errorCode == "STUDIO_FILE_NOT_FOUND", "\(missing): \(r.body)")
        }
        #expect(try await host.request("GET", "/studiox").status == 404)
    }

    @Test("Any other path under /studio is the app's own route: the page (SPA fallback)")
    func fallback() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let page = try await host.rawRequest("GET", "/studio").body
        for path in ["/studio/entities", "/studio/entities/Todo/abc?f=title:eq:x", "/studio/metrics/", "/studio/a%20b/c"] {
            let r = try await host.rawRequest("GET", path)
            #expect(r.status == 200 && r.body == page, "\(path): \(r.status)")
            #expect(r.headers["content-type"] == "text/html; charset=utf-8")
        }
        // Only GET and HEAD: the studio takes no writes.
        #expect(try await host.request("POST", "/studio", json: "{}").status != 200)
        #expect(try await host.request("DELETE", "/studio/entities").status != 200)
    }

    @Test("Paths that try to leave /studio get the page or 404, never anything else (raw socket, admin token sent)")
    func traversal() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let page = try await host.rawRequest("GET", "/studio").body
        let attempts = [
            "/studio/../api/admin/auth/sessions", "/studio/..", "/studio/./../metrics",
            "/studio/assets/../../api/export", "/studio/%2e%2e/api/export", "/studio/%2E%2E/metrics",
            "/studio/..%2fapi/export", "/studio/.%2e/api/export", "/studio/assets/..%2F..%2Fapi%2Fexport",
            "/studio/assets/%2e%2e/%2e%2e/etc/passwd", "/studio/..\\api\\export", "/studio/assets/../index.html",
            "/studio/%252e%252e/api/export", "/studio//../api/export", "/studio/assets//etc/passwd",
        ]
        for path in attempts {
            let socket = try TestSocket.connect(port: host.port)
            defer { socket.release() }
            try socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(HostProcess.adminToken)\r\nConnection: close\r\n\r\n")
            let answer = try await RequestPathTests.read(socket, count: 1).answers[0]
            let ok = [400, 404].contains(answer.status) || (answer.status == 200 && answer.body == page)
            #expect(ok, "\(path): \(answer.status) \(answer.body.prefix(200))")
            #expect(!answer.body.contains("\"exported_at\"") && !answer.body.contains("uptime_secs") && !answer.body.contains("root:"), "\(path)")
        }
    }

    @Test("The data the studio shows still needs the admin token: anonymous 401/403, a user 403, the admin 200")
    func apiNeedsAdmin() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let guest = try await host.request("POST", "/api/auth/guest", json: "{}")
        let user = try #require(guest.json["token"].string, "\(guest.body)")
        for path in ["/api/admin/auth/sessions", "/api/admin/auth/magic_codes", "/api/admin/ops/jobs", "/api/export", "/metrics"] {
            let anon = try await host.request("GET", path)
            #expect([401, 403].contains(anon.status), "\(path) anonymous: \(anon.status)")
            let asUser = try await host.request("GET", path, token: user)
            #expect(asUser.status == 403, "\(path) as a user: \(asUser.status)")
            #expect(try await host.request("GET", path, token: HostProcess.adminToken).status == 200, "\(path) as admin")
        }
        // How the studio tells the admin from anyone else.
        #expect(try await host.request("GET", "/api/auth/me", token: HostProcess.adminToken).json["is_admin"].bool == true)
        #expect(try await host.request("GET", "/api/auth/me", token: user).json["is_admin"].bool == false)
    }

    @Test("The embedded studio is what studio/ builds to (run scripts/gen-studio.py after editing it)")
    func generatedFileIsCurrent() async throws {
        let r = try await TestCommand.run("/usr/bin/env", ["python3", TestPaths.packageRoot.path + "/scripts/gen-studio.py", "--check"], timeout: 120)
        #expect(r.status == 0, "run scripts/gen-studio.py after editing studio/: \(r.stderr)")
    }
}
