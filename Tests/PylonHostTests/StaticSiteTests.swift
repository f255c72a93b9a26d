import Foundation
import Testing

/// The app's web page served beside the API (`static` in the manifest, `PYLON_STATIC_DIR`,
/// `serve --static`): files with their types and validators, folders' index.html, the
/// single-page fallback for page requests only, the API's own 404s untouched, and nothing
/// outside the folder — no dot-files, no `..` (plain or encoded), no symbolic link out.
@Suite("Static site")
struct StaticSiteTests {
    static let manifest = """
    {"manifest_version": 1, "name": "site", "version": "1", "entities": [
      {"name": "Note", "fields": [{"name": "text", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "queries": [], "actions": [], "policies": [], "static": "web"}
    """
    static let files = [
        "web/index.html": "<!doctype html><title>app</title><p>home</p>",
        "web/app.js": "console.log('app');",
        "web/docs/index.html": "<p>docs</p>",
        "web/.env": "SECRET=1",
        "web/.git/config": "[core]",
        "web/.well-known/acme-challenge/tok123": "tok123.thumbprint",
        "web/.well-known/.hidden": "[core] below well-known",
        "web/docs/.well-known/deep": "[core] not at the root",
        "outside.txt": "not for the web",
    ]

    /// A raw request (no client-side path normalisation); returns status and body.
    func raw(_ host: HostProcess, _ target: String, accept: String = "*/*") throws -> (status: Int, body: String) {
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.release() }
        try socket.send("GET \(target) HTTP/1.1\r\nHost: localhost\r\nAccept: \(accept)\r\nConnection: close\r\n\r\n")
        let head = try readHTTPHead(socket)
        var body = head.rest
        while case let .bytes(b) = socket.receive() { body += b }
        return (head.status, String(decoding: body, as: UTF8.self))
    }

    @Test("Files, folders and validators; page requests for unknown paths get index.html, missing assets stay 404")
    func serves() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, files: Self.files)
        defer { host.stop() }
        let home = try await host.rawRequest("GET", "/")
        #expect(home.status == 200 && home.body.contains("home"), "\(home.status) \(home.body)")
        #expect(home.headers["content-type"]?.hasPrefix("text/html") == true)
        let js = try await host.rawRequest("GET", "/app.js")
        #expect(js.status == 200 && js.body == "console.log('app');")
        #expect(js.headers["content-type"]?.contains("javascript") == true, "\(js.headers)")
        #expect(js.headers["cache-control"] == "no-cache")
        #expect(js.headers["x-content-type-options"] == "nosniff")
        let etag = try #require(js.headers["etag"])
        let again = try await host.rawRequest("GET", "/app.js", headers: ["If-None-Match": etag])
        #expect(again.status == 304)
        let head = try await host.rawRequest("HEAD", "/app.js")
        #expect(head.status == 200 && head.body.isEmpty)
        let docs = try await host.rawRequest("GET", "/docs/")
        #expect(docs.status == 200 && docs.body.contains("docs"))
        // RFC 8615: the root's .well-known folder is served (an ACME HTTP-01 challenge).
        let challenge = try raw(host, "/.well-known/acme-challenge/tok123")
        #expect(challenge.status == 200 && challenge.body == "tok123.thumbprint", "\(challenge)")

        // A client-side route: a page request gets index.html; an asset or a non-page request does not.
        let page = try raw(host, "/c/general", accept: "text/html,application/xhtml+xml")
        #expect(page.status == 200 && page.body.contains("home"), "\(page)")
        #expect(try raw(host, "/c/general").status == 404)
        #expect(try raw(host, "/missing.js", accept: "text/html").status == 404)
        let post = try await host.request("POST", "/c/general", json: "{}")
        #expect(post.status == 404 || post.status == 405, "\(post.status)")

        // The API keeps its routes and its JSON 404s, also for page requests.
        let notes = try await host.request("GET", "/api/entities/Note")
        #expect(notes.status == 200, "\(notes.body)")
        for path in ["/api/nope", "/api", "/metricsx/../api/nope"] {
            let r = try raw(host, path, accept: "text/html")
            #expect(r.status == 404 && !r.body.contains("home"), "\(path): \(r)")
        }
        // The studio keeps its paths (its own page, never the app's).
        #expect(try !raw(host, "/studio/x", accept: "text/html").body.contains("home"))
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("Nothing outside the folder: dot-files, .. plain and encoded, symbolic links out of it")
    func staysInside() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, files: Self.files)
        defer { host.stop() }
        try FileManager.default.createSymbolicLink(atPath: host.directory.appendingPathComponent("web/leak.txt").path,
                                                   withDestinationPath: host.directory.appendingPathComponent("outside.txt").path)
        try FileManager.default.createSymbolicLink(atPath: host.directory.appendingPathComponent("web/up").path,
                                                   withDestinationPath: host.directory.path)
        for target in ["/.env", "/.git/config", "/%2eenv", "/../outside.txt", "/%2e%2e/outside.txt", "/docs/%2e%2e/%2e%2e/outside.txt",
                       "/..%2foutside.txt", "/leak.txt", "/up/outside.txt", "/up/pylon.manifest.json", "/app.js%00.html",
                       "/.well-known/.hidden", "/.well-known/../.env", "/.well-known/%2e%2e/.git/config", "/%2ewell-known/.hidden",
                       "/docs/.well-known/deep", "//.well-known/.hidden"] {
            for accept in ["*/*", "text/html"] {
                let r = try raw(host, target, accept: accept)
                #expect(!r.body.contains("not for the web") && !r.body.contains("SECRET") && !r.body.contains("[core]")
                        && !r.body.contains("manifest_version"), "\(target) leaked: \(r)")
                #expect(r.status >= 400 || r.body.contains("home"), "\(target): \(r.status)")
            }
        }
        #expect(try await host.request("GET", "/health").status == 200, "the host survives")
    }

    @Test("PYLON_STATIC_DIR overrides the manifest and PYLON_STATIC_SPA=0 turns the fallback off; a missing folder stops the start")
    func settings() async throws {
        var files = Self.files
        files["other/index.html"] = "<p>other</p>"
        // PYLON_STATIC_DIR is relative to the working directory, which the harness sets to the host's folder.
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_STATIC_DIR": "other", "PYLON_STATIC_SPA": "0"],
                                               files: files)
        defer { host.stop() }
        let r = try await host.rawRequest("GET", "/")
        #expect(r.status == 200 && r.body.contains("other"), "\(r.status) \(r.body)")
        #expect(try raw(host, "/c/general", accept: "text/html").status == 404, "no single-page fallback")

        let bad = Self.manifest.replacingOccurrences(of: "\"static\": \"web\"", with: "\"static\": {\"dir\": \"nowhere\"}")
        try host.writeManifest(bad)
        await host.stopAndWait()
        let run = try await TestCommand.run(TestPaths.hostBinary, ["serve", "--plugins", host.pluginsDir, "--manifest", host.manifestPath,
                                                                   "--db", host.dbPath, "--port", "0", "--no-compat-ports"], timeout: 60)
        #expect(run.status != 0)
        #expect((run.stdout + run.stderr).contains("STATIC_DIR_INVALID"), "\(run.stdout)\(run.stderr)")
    }
}
