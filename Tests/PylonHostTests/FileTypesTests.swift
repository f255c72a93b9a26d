import Foundation
import Testing

/// What an upload may claim and how a download may be loaded (black-box, real host and
/// FilesLocal): every spelling of the upload path the router accepts is streamed under the
/// files limit; a Content-Type must be exactly one media type; a browser may not load a file
/// as a script, worker or stylesheet; downloads carry `nosniff` and
/// `Cross-Origin-Resource-Policy`. The same in Chromium: `FileTypesBrowserTests`.
@Suite("Files: upload path spellings, strict media types, code destinations (black-box)")
struct FileTypesTests {
    /// Spellings of `/api/files/upload` the router sends to the upload handler.
    static let uploadSpellings = ["/api/files/upload", "/api/files/upload/", "/api/files//upload", "//api/files/upload", "/api/files/upload?x=1"]

    static func multipartUpload(_ host: HostProcess, _ path: String, _ bytes: [UInt8], token: String, type: String = "application/octet-stream") async throws -> FilesTests.Answer {
        try await FilesTests.send(host, "POST", path, token: token,
                                  headers: [("Content-Type", "multipart/form-data; boundary=----pylon-test-7MA4YWxk")],
                                  body: FilesTests.multipart(bytes, filename: "f.bin", type: type))
    }

    @Test("Every spelling of the upload path is streamed under the files limit, not PYLON_MAX_BODY_BYTES: a file over the body limit but within the files limit is stored, raw and multipart")
    func spellingsStream() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest,
                                               env: ["PYLON_FILES_MAX_BYTES": "300000", "PYLON_MAX_BODY_BYTES": "100000"])
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = FilesTests.randomBytes(200_000)
        for path in Self.uploadSpellings {
            let mp = try await Self.multipartUpload(host, path, bytes, token: alice)
            #expect(mp.status == 201 && mp.json["size"].int == bytes.count, "multipart \(path): \(mp.status) \(mp.text)")
            let raw = try await FilesTests.send(host, "POST", path, token: alice, headers: [("Content-Type", "application/octet-stream")], body: bytes)
            #expect(raw.status == 201 && raw.json["size"].int == bytes.count, "raw \(path): \(raw.status) \(raw.text)")
            let back = try await FilesTests.send(host, "GET", "/api/files/\(mp.json["id"].string ?? "")", token: alice)
            #expect(back.body == bytes, "\(path): the bytes come back")
        }
    }

    @Test("Hostile: no spelling of the upload path takes a file over the files limit (413, nothing kept), raw, multipart or chunked multipart")
    func spellingsLimited() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest,
                                               env: ["PYLON_FILES_MAX_BYTES": "300000", "PYLON_MAX_BODY_BYTES": "4000000"])
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let big = FilesTests.randomBytes(700_000)
        for path in Self.uploadSpellings {
            let mp = try await Self.multipartUpload(host, path, big, token: alice)
            #expect(mp.status == 413 && mp.json["error"]["code"].string == "PAYLOAD_TOO_LARGE", "multipart \(path): \(mp.status) \(mp.text)")
            let raw = try await FilesTests.send(host, "POST", path, token: alice, body: big)
            #expect(raw.status == 413, "raw \(path): \(raw.status) \(raw.text)")
            // Chunked: no length to refuse up front; the limit holds as the parts arrive.
            let body = FilesTests.multipart(big, filename: "f.bin", type: "application/octet-stream")
            let head = "Content-Type: multipart/form-data; boundary=----pylon-test-7MA4YWxk\r\n"
            let streamed = try await FilesTests.exchange(host, FilesTests.chunkedUpload(path, token: alice, body, head: head))
            #expect(streamed.status == 413, "chunked multipart \(path): \(streamed.status) \(streamed.text)")
        }
        try await FilesTests.expectNothingKept(host, "no oversized file is kept under any spelling")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("One media type is stored and served as sent; only plain text, PDF and non-XML images, audio and video are shown inline")
    func typesKept() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let table: [(type: String, inline: Bool)] = [
            ("text/plain; charset=utf-8", true), ("IMAGE/PNG", true), ("image/png; x=\"a,text/html\"", true), ("text/plain;", true),
            ("application/pdf", true), ("video/mp4", true), ("application/javascript", false), ("text/html", false),
            ("image/svg+xml", false), ("image/x-foo+xml", false), ("text/plainhtml", false), ("text/plain-html", false),
        ]
        for (type, inline) in table {
            for multipart in [false, true] {
                let up = multipart ? try await Self.multipartUpload(host, "/api/files/upload", [1, 2, 3], token: alice, type: type)
                                   : try await FilesTests.upload(host, [1, 2, 3], token: alice, name: "f", type: type)
                #expect(up.status == 201 && up.json["type"].string == type, "\(type) multipart=\(multipart): \(up.status) \(up.text)")
                let got = try await FilesTests.send(host, "GET", "/api/files/\(up.json["id"].string ?? "")", token: alice)
                #expect(got.headers["content-type"] == type, "\(type): \(got.headers)")
                #expect(got.headers["content-disposition"]?.hasPrefix(inline ? "inline" : "attachment") == true, "\(type): \(got.headers)")
            }
        }
    }

    @Test("Hostile: a Content-Type that is a list or not one RFC 9110 media type is 400 INVALID_CONTENT_TYPE, raw or multipart, and nothing is kept")
    func typesRefused() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bad = ["text/plain; charset=utf-8, text/html", "text/plain;,text/html", "text/plain, text/html", "video/mp4, text/html",
                   "text/plain; charset = utf-8", "text/plain; a=\"open", "text/plain; =x", "text/plain; a=", "text/plain; a",
                   "text/plain charset=x", "text/pl@in", "text/", "/plain", "plain", "text/plain/x",
                   "text/plain; a=b" + String(repeating: "c", count: 260)]
        for type in bad {
            for multipart in [false, true] {
                let r = multipart ? try await Self.multipartUpload(host, "/api/files/upload", [1, 2, 3], token: alice, type: type)
                                  : try await FilesTests.upload(host, [1, 2, 3], token: alice, type: type)
                #expect(r.status == 400 && r.json["error"]["code"].string == "INVALID_CONTENT_TYPE", "\(type) multipart=\(multipart): \(r.status) \(r.text)")
            }
        }
        try await FilesTests.expectNothingKept(host, "no file with a refused type is kept")
    }

    @Test("A file is served for fetch(), navigation and <img> (Sec-Fetch-Dest empty, document, image) with its stored type, nosniff once and Cross-Origin-Resource-Policy: same-site")
    func destinationsServed() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let js = Array("document.title = 'ran'".utf8)
        let id = try #require(try await FilesTests.upload(host, js, token: alice, name: "x.js", type: "application/javascript").json["id"].string)
        for dest in [nil, "empty", "document", "image", "iframe"] {
            let r = try await FilesTests.send(host, "GET", "/api/files/\(id)", token: alice, headers: dest.map { [("Sec-Fetch-Dest", $0)] } ?? [])
            #expect(r.status == 200 && r.body == js && r.headers["content-type"] == "application/javascript", "\(dest ?? "none"): \(r.status) \(r.text)")
            #expect(r.headers["x-content-type-options"] == "nosniff" && r.headers["cross-origin-resource-policy"] == "same-site", "\(r.headers)")
        }
        // A 304 carries them too.
        let etag = try await FilesTests.send(host, "GET", "/api/files/\(id)", token: alice).headers["etag"] ?? ""
        let unchanged = try await FilesTests.send(host, "GET", "/api/files/\(id)", token: alice, headers: [("If-None-Match", etag)])
        #expect(unchanged.status == 304 && unchanged.headers["cross-origin-resource-policy"] == "same-site", "\(unchanged.headers)")
    }

    @Test("Hostile: a load as a script, worker, worklet, XSLT or stylesheet is 403 FILE_DESTINATION_REFUSED — with a signed link, by HEAD, and for a missing file alike")
    func destinationsRefused() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let id = try #require(try await FilesTests.upload(host, Array("alert(1)".utf8), token: alice, name: "x.js", type: "text/javascript").json["id"].string)
        let signed = try #require(try await FilesTests.send(host, "POST", "/api/files/\(id)/sign", token: alice).json["url"].string)
        let missing = "/api/files/file_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        for dest in ["script", "worker", "sharedworker", "serviceworker", "audioworklet", "paintworklet", "xslt", "style", "Script"] {
            let owner = try await FilesTests.send(host, "GET", "/api/files/\(id)", token: alice, headers: [("Sec-Fetch-Dest", dest)])
            #expect(owner.status == 403 && owner.json["error"]["code"].string == "FILE_DESTINATION_REFUSED", "\(dest): \(owner.status) \(owner.text)")
            #expect(!owner.text.contains("alert"))
            let link = try await FilesTests.send(host, "GET", signed, headers: [("Sec-Fetch-Dest", dest)])
            let gone = try await FilesTests.send(host, "GET", missing, token: alice, headers: [("Sec-Fetch-Dest", dest)])
            #expect(link.status == 403 && gone.status == 403 && gone.text == owner.text, "\(dest): \(link.status) \(gone.status) \(gone.text)")
            #expect(try await FilesTests.send(host, "HEAD", "/api/files/\(id)", token: alice, headers: [("Sec-Fetch-Dest", dest)]).status == 403)
        }
        #expect(try await FilesTests.send(host, "GET", signed).status == 200, "the link still works for a plain load")
    }
}

/// `FileTypesTests`' script refusal as a browser meets it: Tests/Fixtures/files/browser.py
/// adds a `<script src>` of an uploaded script to the studio page in headless Chromium.
@Suite("Files in Chromium: an uploaded script does not run on the host's origin")
struct FileTypesBrowserTests {
    @Test("A <script> of an uploaded application/javascript file on the studio page is refused and does not run; fetch() still reads it")
    func uploadedScript() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let js = Array("document.title = 'uploaded-js-ran:' + location.origin;".utf8)
        let id = try #require(try await FilesTests.upload(host, js, token: alice, name: "x.js", type: "application/javascript").json["id"].string)
        let signed = try #require(try await FilesTests.send(host, "POST", "/api/files/\(id)/sign", token: alice).json["url"].string)
        let script = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/files/browser.py").path
        let run = try await TestCommand.run("/usr/bin/env", ["python3", script, host.baseURL, signed], timeout: 300)
        #expect(run.status == 0, "files browser test failed:\n\(run.stdout)\n\(run.stderr)\nhost log:\n\(host.log.suffix(4000))")
        #expect(run.stdout.contains("files browser test passed"), "\(run.stdout)")
    }
}
