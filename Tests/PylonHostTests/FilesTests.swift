import Foundation
import Testing
import PylonServices

/// File uploads (issue 21, Files): a real host with the real FilesLocal plugin, over real
/// sockets, on SQLite and Postgres. Binary bytes (0x00 included) come back exactly, raw and
/// multipart; ranges, HEAD, ETag; signed links work and expire; another user sees nothing;
/// names and ids cannot reach a path; an oversized or aborted upload leaves no file and no
/// row; delete removes both.
@Suite("Files: pylon.files/1 with FilesLocal (black-box, SQLite and Postgres)")
struct FilesTests {
    static let manifest = """
    {"manifest_version": 1, "name": "files", "version": "0.1.0",
     "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "policies": []}
    """

    static let stores = [TestStore.sqlite, TestStore.postgres]

    /// Random bytes with every byte value, 0x00 among them, longer than one upload piece.
    static func randomBytes(_ count: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        var b = (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
        for v in 0...255 { b[v * 7 % count] = UInt8(v) }
        b[0] = 0
        return b
    }

    // MARK: Raw HTTP over a socket (bytes, not text)

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var json: Any? { try? TestJSON.parse(String(decoding: body, as: UTF8.self)) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        return Array((head + "\r\n").utf8) + (body ?? [])
    }

    /// Sends `bytes` on a new connection and reads the answer to its end.
    static func exchange(_ host: HostProcess, _ bytes: [UInt8], head: Bool = false) async throws -> Answer {
        let port = host.port
        return try await onThread {
            let s = try TestSocket.connect(port: port)
            defer { s.release() }
            try s.send(bytes)
            return try readAnswer(s, head: head)
        }
    }

    /// Reads one answer from `s`: its head, then its body (to its length, or to the end).
    static func readAnswer(_ s: TestSocket, head: Bool = false) throws -> Answer {
        let (status, headers, rest) = try readHTTPHead(s)
        var body = rest
        let length = head || status == 304 ? 0 : headers["content-length"].flatMap { Int($0) }
        reading: while length.map({ body.count < $0 }) ?? true {
            switch s.receive() {
            case let .bytes(b): body += b
            case .end, .failed: break reading
            }
        }
        return Answer(status: status, headers: headers, body: length.map { Array(body.prefix($0)) } ?? body)
    }

    static func send(_ host: HostProcess, _ method: String, _ path: String, token: String? = nil,
                     headers: [(String, String)] = [], body: [UInt8]? = nil) async throws -> Answer {
        var h = headers
        if let token { h.append(("Authorization", "Bearer \(token)")) }
        return try await exchange(host, request(method, path, headers: h, body: body), head: method == "HEAD")
    }

    static func upload(_ host: HostProcess, _ bytes: [UInt8], token: String, name: String = "data.bin",
                       type: String = "application/octet-stream") async throws -> Answer {
        try await send(host, "POST", "/api/files/upload", token: token,
                       headers: [("X-Filename", name), ("Content-Type", type)], body: bytes)
    }

    static func multipart(_ bytes: [UInt8], filename: String, type: String, boundary: String = "----pylon-test-7MA4YWxk") -> [UInt8] {
        var body = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot the file\r\n".utf8)
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: \(type)\r\n\r\n".utf8)
        body += bytes
        body += Array("\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nignored\r\n--\(boundary)--\r\n".utf8)
        return body
    }

    /// A POST of `body` to `path` in 64 KiB chunks (no length announced), `head` lines added.
    static func chunkedUpload(_ path: String, token: String, _ body: [UInt8], head: String = "") -> [UInt8] {
        var out = Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \(token)\r\n\(head)Transfer-Encoding: chunked\r\n\r\n".utf8)
        for start in stride(from: 0, to: body.count, by: 65536) {
            let piece = body[start..<min(start + 65536, body.count)]
            out += Array("\(String(piece.count, radix: 16))\r\n".utf8) + piece + [13, 10]
        }
        return out + Array("0\r\n\r\n".utf8)
    }

    /// Regular files under the host's files folder (committed and temp).
    static func storedFiles(_ host: HostProcess) -> [String] {
        let root = host.directory.appendingPathComponent("files").path
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let p = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + p, isDirectory: &isDir), !isDir.boolValue { out.append(p) }
        }
        return out.sorted()
    }

    /// The `_pylon_files` entries of the change log, as the admin pulls them.
    static func fileEvents(_ host: HostProcess) async throws -> [(kind: String, id: String)] {
        let r = try await host.request("GET", "/api/sync/pull?since=0&limit=1000", token: HostProcess.adminToken)
        #expect(r.status == 200, "\(r.body)")
        return r.json["changes"].items.compactMap { e in
            guard e["entity"].string == "_pylon_files", let kind = e["kind"].string, let id = e["row_id"].string else { return nil }
            return (kind, id)
        }
    }

    /// Waits until no file (committed or temp) is under the files folder, then checks that
    /// the change log has no `_pylon_files` entry.
    static func expectNothingKept(_ host: HostProcess, _ what: String) async throws {
        try await eventually(what, timeout: 20) { storedFiles(host).isEmpty ? true : nil }
        #expect(try await fileEvents(host).isEmpty)
    }

    static func sha256(_ bytes: [UInt8], in dir: URL) async throws -> String {
        let f = dir.appendingPathComponent("sha-input-\(UUID().uuidString)")
        try Data(bytes).write(to: f)
        defer { try? FileManager.default.removeItem(at: f) }
        let r = try await TestCommand.run("/usr/bin/sha256sum", [f.path])
        return String(r.stdout.prefix(64))
    }

    // MARK: Tests

    @Test("Random binary bytes (0x00 included) round-trip byte for byte, raw and multipart, with the stored type, size, sha256, ETag; HEAD", arguments: stores)
    func roundTrip(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = Self.randomBytes(700_000)
        let sha = try await Self.sha256(bytes, in: host.directory)

        let up = try await Self.upload(host, bytes, token: alice, name: "photo.png", type: "image/png")
        #expect(up.status == 201, "\(up.text)")
        let id = try #require(up.json["id"].string)
        #expect(id.hasPrefix("file_") && id.count == 37)
        #expect(up.json["url"].string == "/api/files/\(id)")
        #expect(up.json["size"].int == bytes.count)
        #expect(up.json["sha256"].string == sha)
        #expect(up.json["name"].string == "photo.png" && up.json["type"].string == "image/png")
        #expect(up.json["owner"].string == "alice")

        let got = try await Self.send(host, "GET", "/api/files/\(id)", token: alice)
        #expect(got.status == 200)
        #expect(got.body == bytes, "the bytes differ (\(got.body.count) vs \(bytes.count))")
        #expect(got.headers["content-type"] == "image/png")
        #expect(got.headers["content-length"] == String(bytes.count))
        #expect(got.headers["etag"] == "\"\(sha)\"")
        #expect(got.headers["accept-ranges"] == "bytes")
        #expect(got.headers["x-content-type-options"] == "nosniff")

        let head = try await Self.send(host, "HEAD", "/api/files/\(id)", token: alice)
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.headers["content-length"] == String(bytes.count) && head.headers["content-type"] == "image/png")

        // Multipart: the first part with a filename is the file; the name keeps its last component.
        let body = Self.multipart(bytes, filename: "../../etc/picture.jpg", type: "image/jpeg")
        let mp = try await Self.send(host, "POST", "/api/files/upload", token: alice,
                                     headers: [("Content-Type", "multipart/form-data; boundary=----pylon-test-7MA4YWxk")], body: body)
        #expect(mp.status == 201, "\(mp.text)")
        #expect(mp.json["name"].string == "picture.jpg" && mp.json["type"].string == "image/jpeg")
        #expect(mp.json["size"].int == bytes.count && mp.json["sha256"].string == sha)
        let mpID = try #require(mp.json["id"].string)
        let mpGot = try await Self.send(host, "GET", "/api/files/\(mpID)", token: alice)
        #expect(mpGot.body == bytes && mpGot.headers["content-type"] == "image/jpeg")

        // An empty file is a file too.
        let empty = try await Self.upload(host, [], token: alice)
        #expect(empty.status == 201 && empty.json["size"].int == 0, "\(empty.text)")
        let emptyGot = try await Self.send(host, "GET", "/api/files/\(empty.json["id"].string ?? "")", token: alice)
        #expect(emptyGot.status == 200 && emptyGot.body.isEmpty && emptyGot.headers["content-length"] == "0")

        // Each upload is a row in the change log.
        let events = try await Self.fileEvents(host)
        #expect(events.filter { $0.kind == "insert" }.map(\.id).sorted() == [id, mpID, empty.json["id"].string ?? ""].sorted())
    }

    @Test("Range requests: a-b, a-, suffix, clamped end, unsatisfiable 416 however large, malformed ignored (bytes=--1 too); If-None-Match 304 by weak comparison", arguments: stores)
    func ranges(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = Self.randomBytes(1000)
        let id = try #require(try await Self.upload(host, bytes, token: alice).json["id"].string)
        func get(_ range: String) async throws -> Answer {
            try await Self.send(host, "GET", "/api/files/\(id)", token: alice, headers: [("Range", range)])
        }
        let a = try await get("bytes=0-9")
        #expect(a.status == 206 && a.body == Array(bytes[0...9]) && a.headers["content-range"] == "bytes 0-9/1000")
        #expect(a.headers["content-length"] == "10")
        let b = try await get("bytes=990-")
        #expect(b.status == 206 && b.body == Array(bytes[990...]) && b.headers["content-range"] == "bytes 990-999/1000")
        let suffix = try await get("bytes=-5")
        #expect(suffix.status == 206 && suffix.body == Array(bytes[995...]) && suffix.headers["content-range"] == "bytes 995-999/1000")
        let clamped = try await get("bytes=500-999999")
        #expect(clamped.status == 206 && clamped.body == Array(bytes[500...]))
        let bigSuffix = try await get("bytes=-5000")
        #expect(bigSuffix.status == 206 && bigSuffix.body == bytes)
        let past = try await get("bytes=1000-")
        #expect(past.status == 416 && past.headers["content-range"] == "bytes */1000", "\(past.text)")
        #expect(past.json["error"]["code"].string == "RANGE_NOT_SATISFIABLE")
        for huge in ["bytes=9223372036854775807-", "bytes=99999999999999999999-"] {
            let r = try await get(huge)
            #expect(r.status == 416 && r.headers["content-range"] == "bytes */1000", "\(huge) is valid and past the end → \(r.status)")
        }
        for ignored in ["bytes=9-2", "bytes=abc", "items=0-1", "bytes=0-1,5-6", "bytes=--1", "bytes=-+5", "bytes=+1-2"] {
            let r = try await get(ignored)
            #expect(r.status == 200 && r.body == bytes, "\(ignored) → \(r.status)")
        }
        let etag = try #require(a.headers["etag"])
        // If-None-Match compares weakly (RFC 9110 §13.1.2): W/ matches the strong tag; a list
        // matches when any member does; another tag does not.
        for (header, status) in [(etag, 304), ("W/" + etag, 304), (#""x", W/"# + etag, 304), ("*", 304), (#""nope""#, 200), (#"W/"nope""#, 200)] {
            let r = try await Self.send(host, "GET", "/api/files/\(id)", token: alice, headers: [("If-None-Match", header)])
            #expect(r.status == status && (status == 304 ? r.body.isEmpty : r.body == bytes), "If-None-Match: \(header) → \(r.status)")
        }
        // If-Range compares strongly: a weak tag sends the whole file, not the range.
        let weakIfRange = try await Self.send(host, "GET", "/api/files/\(id)", token: alice, headers: [("Range", "bytes=0-9"), ("If-Range", "W/" + etag)])
        #expect(weakIfRange.status == 200 && weakIfRange.body == bytes, "\(weakIfRange.status)")
    }

    @Test("Access: the owner and admins read; another user gets 404 (as for a missing file); no credentials 401; signed links work without a cookie and expire; a bad link is 403 whether or not the file exists", arguments: stores)
    func access(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let bytes = Self.randomBytes(4096)
        let id = try #require(try await Self.upload(host, bytes, token: alice, type: "image/png").json["id"].string)

        let other = try await Self.send(host, "GET", "/api/files/\(id)", token: bob)
        let missing = try await Self.send(host, "GET", "/api/files/file_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", token: bob)
        #expect(other.status == 404 && missing.status == 404)
        #expect(other.json["error"]["code"].string == "FILE_NOT_FOUND" && other.text == missing.text)
        #expect(try await Self.send(host, "DELETE", "/api/files/\(id)", token: bob).status == 404)
        #expect(try await Self.send(host, "POST", "/api/files/\(id)/sign", token: bob).status == 404)
        #expect(try await Self.send(host, "GET", "/api/files/\(id)").status == 401)
        #expect(try await Self.upload(host, bytes, token: "not-a-session").status == 401)
        let admin = try await Self.send(host, "GET", "/api/files/\(id)", token: HostProcess.adminToken)
        #expect(admin.status == 200 && admin.body == bytes)

        // A signed link: no credentials needed, works until it expires.
        let signed = try await Self.send(host, "POST", "/api/files/\(id)/sign", token: alice, headers: [("Content-Type", "application/json")],
                                         body: Array(#"{"expires_in": 600}"#.utf8))
        #expect(signed.status == 200, "\(signed.text)")
        let url = try #require(signed.json["url"].string)
        #expect(url.hasPrefix("/api/files/\(id)?exp="))
        let viaLink = try await Self.send(host, "GET", url)
        #expect(viaLink.status == 200 && viaLink.body == bytes && viaLink.headers["content-type"] == "image/png")
        let viaLinkRange = try await Self.send(host, "GET", url, headers: [("Range", "bytes=0-1")])
        #expect(viaLinkRange.status == 206 && viaLinkRange.body == Array(bytes[0...1]))

        // Signed correctly (the --dev secret) but expired: 403, like a tampered one.
        let past = Int64(Date().timeIntervalSince1970) - 10
        let expiredSig = FileSignature(secret: "pylon-development-files-secret").sign(id: id, expires: past)
        let expired = try await Self.send(host, "GET", "/api/files/\(id)?exp=\(past)&sig=\(expiredSig)")
        #expect(expired.status == 403 && expired.json["error"]["code"].string == "INVALID_SIGNATURE", "\(expired.text)")
        let tampered = try await Self.send(host, "GET", url.replacingOccurrences(of: "sig=", with: "sig=x"))
        #expect(tampered.status == 403)
        let otherID = url.replacingOccurrences(of: id, with: "file_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        let forMissing = try await Self.send(host, "GET", otherID)
        #expect(forMissing.status == 403 && forMissing.text == tampered.text, "a bad link must not tell whether the file exists")
        let badExp = try await Self.send(host, "GET", "/api/files/\(id)?exp=99999999999&sig=abc")
        #expect(badExp.status == 403)
        let tooLong = try await Self.send(host, "POST", "/api/files/\(id)/sign", token: alice, headers: [("Content-Type", "application/json")],
                                          body: Array(#"{"expires_in": 99999999}"#.utf8))
        #expect(tooLong.status == 400)
    }

    @Test("A manifest read rule (plugins.files.allowRead) admits more readers; delete and signing stay the owner's; an anonymous caller it does not admit gets 401 whether or not the file exists")
    func readRule() async throws {
        let manifest = Self.manifest.replacingOccurrences(
            of: #""policies": []"#, with: #""policies": [], "plugins": {"files": {"allowRead": "data.type == \"image/png\""}}"#)
        let host = try await HostProcess.start(manifest: manifest, env: ["PYLON_FILES_SECRET": "test-files-secret"], dev: false)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let png = try #require(try await Self.upload(host, [1, 2, 3], token: alice, type: "image/png").json["id"].string)
        let bin = try #require(try await Self.upload(host, [4, 5, 6], token: alice).json["id"].string)
        let bobPNG = try await Self.send(host, "GET", "/api/files/\(png)", token: bob)
        #expect(bobPNG.status == 200 && bobPNG.body == [1, 2, 3])
        #expect(try await Self.send(host, "GET", "/api/files/\(bin)", token: bob).status == 404)
        #expect(try await Self.send(host, "GET", "/api/files/\(bin)", token: alice).status == 200)
        #expect(try await Self.send(host, "GET", "/api/files/\(png)").status == 200)
        let anonymousBin = try await Self.send(host, "GET", "/api/files/\(bin)")
        let anonymousMissing = try await Self.send(host, "GET", "/api/files/file_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        #expect(anonymousBin.status == 401 && anonymousMissing.status == 401 && anonymousBin.text == anonymousMissing.text)
        #expect(try await Self.send(host, "DELETE", "/api/files/\(png)", token: bob).status == 404)
        #expect(try await Self.send(host, "POST", "/api/files/\(png)/sign", token: bob).status == 404)
        // Outside --dev with PYLON_FILES_SECRET: links are signed with it.
        let link = try await Self.send(host, "POST", "/api/files/\(bin)/sign", token: alice)
        #expect(link.status == 200, "\(link.text)")
        #expect(try await Self.send(host, "GET", link.json["url"].string ?? "").body == [4, 5, 6])
    }

    @Test("Path traversal: a hostile X-Filename is only a name (its last component), ids that are paths name no file, and files land only under the files folder with plugin-chosen keys", arguments: stores)
    func traversal(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = Self.randomBytes(2048)
        let up = try await Self.upload(host, bytes, token: alice, name: "../../../../tmp/pwned\u{1}.sh", type: "text/html\r\nX-Evil: 1")
        // A CR/LF cannot even be sent in a header: the request is refused, or the type is replaced.
        if up.status == 201 {
            #expect(up.json["name"].string == "pwned.sh")
            #expect(up.json["type"].string == "application/octet-stream" || up.json["type"].string == "text/html")
        }
        let clean = try await Self.upload(host, bytes, token: alice, name: "..\\..\\windows\\evil.html", type: "text/html")
        #expect(clean.status == 201 && clean.json["name"].string == "evil.html", "\(clean.text)")
        let html = try await Self.send(host, "GET", "/api/files/\(clean.json["id"].string ?? "")", token: alice)
        // An uploaded page is never shown inline on the API's origin, and runs sandboxed.
        #expect(html.headers["content-disposition"]?.hasPrefix("attachment") == true, "\(html.headers)")
        #expect(html.headers["content-security-policy"]?.contains("sandbox") == true)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/pwned.sh"))
        for path in ["/api/files/..%2F..%2Fetc%2Fpasswd", "/api/files/%2e%2e", "/api/files/file_..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                     "/api/files/file_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%2F", "/api/files/upload"] {
            let r = try await Self.send(host, "GET", path, token: HostProcess.adminToken)
            #expect(r.status == 404, "\(path) → \(r.status) \(r.text)")
            #expect(!r.text.contains("root:"))
        }
        // Only plugin-chosen keys (hex) in two-character folders; no temp file left.
        let stored = Self.storedFiles(host)
        #expect(stored.count == (up.status == 201 ? 2 : 1), "\(stored)")
        #expect(stored.allSatisfy { $0.range(of: "^[0-9a-f]{2}/[0-9a-f]{32}$", options: .regularExpression) != nil }, "\(stored)")
    }

    @Test("An upload over PYLON_FILES_MAX_BYTES is 413 (announced, chunked or multipart) and leaves no file and no row", arguments: stores)
    func oversized(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_FILES_MAX_BYTES": "300000"], store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let big = Self.randomBytes(700_000)
        let announced = try await Self.upload(host, big, token: alice)
        #expect(announced.status == 413 && announced.json["error"]["code"].string == "PAYLOAD_TOO_LARGE", "\(announced.text)")
        // Chunked: the size is only known as the body arrives, after the upload has begun.
        let streamed = try await Self.exchange(host, Self.chunkedUpload("/api/files/upload", token: alice, big))
        #expect(streamed.status == 413, "\(streamed.text)")
        let mp = try await Self.send(host, "POST", "/api/files/upload", token: alice,
                                     headers: [("Content-Type", "multipart/form-data; boundary=----pylon-test-7MA4YWxk")],
                                     body: Self.multipart(big, filename: "big.bin", type: "application/octet-stream"))
        #expect(mp.status == 413)
        try await Self.expectNothingKept(host, "no file is left")
        // The limit is what it says: an upload just under it is stored.
        let fits = try await Self.upload(host, Array(big.prefix(300_000)), token: alice)
        #expect(fits.status == 201, "\(fits.text)")
    }

    @Test("A client that closes mid-upload leaves no file and no row, and the host goes on serving", arguments: stores)
    func aborted(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let port = host.port
        let part = Self.randomBytes(600_000)
        let s = try TestSocket.connect(port: port)
        defer { s.release() }
        try await onThread {
            try s.send(Array("POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(alice)\r\nContent-Length: 2000000\r\n\r\n".utf8))
            try s.send(part)
        }
        // The upload has begun (its temp file holds the first pieces), then the client leaves.
        try await eventually("the upload's temp file", timeout: 20) { Self.storedFiles(host).isEmpty ? nil : true }
        #expect(Self.storedFiles(host).allSatisfy { $0.hasPrefix("tmp/") && $0.hasSuffix(".part") }, "\(Self.storedFiles(host))")
        s.close()
        try await Self.expectNothingKept(host, "the partial upload is removed")
        let after = try await Self.upload(host, [1, 2, 3], token: alice)
        #expect(after.status == 201, "\(after.text)")
    }

    @Test("Delete: the owner (or an admin) deletes the row, with a change-log entry, and the bytes", arguments: stores)
    func delete(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let id = try #require(try await Self.upload(host, Self.randomBytes(5000), token: alice).json["id"].string)
        let second = try #require(try await Self.upload(host, Self.randomBytes(10), token: alice).json["id"].string)
        #expect(Self.storedFiles(host).count == 2)
        let d = try await Self.send(host, "DELETE", "/api/files/\(id)", token: alice)
        #expect(d.status == 200 && d.json["deleted"].bool == true, "\(d.text)")
        #expect(try await Self.send(host, "GET", "/api/files/\(id)", token: alice).status == 404)
        #expect(try await Self.send(host, "DELETE", "/api/files/\(id)", token: alice).status == 404)
        #expect(try await Self.send(host, "DELETE", "/api/files/\(second)", token: HostProcess.adminToken).status == 200)
        #expect(Self.storedFiles(host).isEmpty)
        let events = try await Self.fileEvents(host)
        #expect(events.map(\.kind) == ["insert", "insert", "delete", "delete"], "\(events)")
    }

    @Test("Keep-alive: an upload and the request pipelined after it are both answered; an upload refused before its body ended is answered, then the connection closes once the body has gone by")
    func keepAlive() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = Self.randomBytes(300_000)
        let port = host.port
        let both = try await onThread { () -> String in
            let s = try TestSocket.connect(port: port)
            defer { s.release() }
            try s.send(Array("POST /api/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(alice)\r\nContent-Length: \(bytes.count)\r\n\r\n".utf8)
                       + bytes + Array("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            var all: [UInt8] = []
            while case let .bytes(b) = s.receive() { all += b }
            return String(decoding: all, as: UTF8.self)
        }
        #expect(both.hasPrefix("HTTP/1.1 201"), "\(both.prefix(300))")
        #expect(both.contains("HTTP/1.1 200") && both.contains("\"status\":\"ok\""), "\(both.suffix(300))")

        // No credentials: 401 while the body is still coming; the rest goes by unread, then close.
        let refused = try await onThread { () -> (Int, Bool) in
            let s = try TestSocket.connect(port: port)
            defer { s.release() }
            try s.send(Array("POST /api/files/upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(bytes.count)\r\n\r\n".utf8) + bytes.prefix(1000))
            let (status, _, _) = try readHTTPHead(s)
            try s.send(Array(bytes.dropFirst(1000)))
            var closed = false
            reading: while true {
                switch s.receive() {
                case .bytes: continue
                case .end, .failed: closed = true; break reading
                }
            }
            return (status, closed)
        }
        #expect(refused.0 == 401 && refused.1)
        #expect(Self.storedFiles(host).count == 1)
    }

    /// Whether this process may mount a small tmpfs (root, as on the machines CI runs on).
    static let canMount: Bool = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/mount")

    @Test("A full disk: 507 DISK_FULL, the temp file removed at once, no row; the next upload that fits is stored",
          .enabled(if: canMount, "needs root to mount a small tmpfs"))
    func diskFull() async throws {
        let dir = try await Self.smallDisk("pylon-files-full", size: "256k")
        defer { Self.unmount(dir) }
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_FILES_DIR": dir.path])
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let full = try await Self.upload(host, Self.randomBytes(600_000), token: alice)
        #expect(full.status == 507 && full.json["error"]["code"].string == "DISK_FULL", "\(full.status) \(full.text)")
        let left = try FileManager.default.subpathsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix("tmp") && $0 != "tmp" }
        #expect(left.isEmpty, "\(left)")
        #expect(try await Self.fileEvents(host).isEmpty)
        let fits = try await Self.upload(host, Self.randomBytes(20_000), token: alice)
        #expect(fits.status == 201, "\(fits.text)")
    }

    /// A fresh folder with a tmpfs of `size` mounted on it (needs root: `canMount`).
    static func smallDisk(_ name: String, size: String) async throws -> URL {
        let dir = try TestPaths.freshTempDir(name)
        let mounted = try await TestCommand.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", dir.path])
        if mounted.status != 0 {
            TestPaths.removeTempDir(dir)
            throw HostProcessError(description: "mount failed: \(mounted.stderr)")
        }
        return dir
    }

    /// Unmounts a `smallDisk` and removes its folder.
    static func unmount(_ dir: URL) {
        _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir.path]).waitUntilExit()
        TestPaths.removeTempDir(dir)
    }

    /// An outside probe (session 24): a guest filled the disk with uploads; then the store
    /// could not write, and not even the admin's delete could free space.
    @Test("Uploads stop short of filling their disk: 507 DISK_FULL while 5% of it (at most 1 GiB) is still free",
          .enabled(if: canMount, "needs root to mount a small tmpfs"))
    func diskReserve() async throws {
        let dir = try await Self.smallDisk("pylon-files-reserve", size: "2m")
        defer { Self.unmount(dir) }
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_FILES_DIR": dir.path])
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        var stored = 0
        var refusal: (status: Int, code: String?)?
        for _ in 0..<80 where refusal == nil {
            let r = try await Self.upload(host, Self.randomBytes(50_000), token: alice)
            if r.status == 201 { stored += 1 } else { refusal = (r.status, r.json["error"]["code"].string) }
        }
        #expect(stored > 10 && refusal?.status == 507 && refusal?.code == "DISK_FULL", "\(stored) stored, then \(String(describing: refusal))")
        var st = statvfs()
        #expect(statvfs(dir.path, &st) == 0)
        let unit = Int64(st.f_frsize), free = Int64(st.f_bavail) * unit, size = Int64(st.f_blocks) * unit
        #expect(free >= size / 20, "\(free) bytes free of \(size) after the refusal")
    }

    @Test("GDPR: a user's export lists their files; purge deletes their file rows (logged) and bytes, and no one else's", arguments: stores)
    func gdpr(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let a1 = try #require(try await Self.upload(host, [1], token: alice, name: "one.bin").json["id"].string)
        let a2 = try #require(try await Self.upload(host, [2], token: alice, name: "two.bin").json["id"].string)
        let b1 = try #require(try await Self.upload(host, [3], token: bob).json["id"].string)
        let export = try await host.request("POST", "/api/admin/users/alice/export", token: HostProcess.adminToken)
        #expect(export.json["counts"]["_pylon_files"].int == 2, "\(export.body)")
        #expect(export.json["entities"]["_pylon_files"].items.compactMap { $0["name"].string } == ["one.bin", "two.bin"])
        let purge = try await host.request("DELETE", "/api/admin/users/alice/purge", token: HostProcess.adminToken)
        #expect(purge.status == 200 && purge.json["deleted"]["_pylon_files"].int == 2, "\(purge.body)")
        for id in [a1, a2] { #expect(try await Self.send(host, "GET", "/api/files/\(id)", token: HostProcess.adminToken).status == 404) }
        #expect(try await Self.send(host, "GET", "/api/files/\(b1)", token: bob).body == [3])
        #expect(Self.storedFiles(host).count == 1)
        let deletes = try await Self.fileEvents(host).filter { $0.kind == "delete" }.map(\.id).sorted()
        #expect(deletes == [a1, a2].sorted())
    }

    @Test("Deleting an account deletes its files (rows logged, bytes removed), and no one else's", arguments: stores)
    func accountDeletion(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let mine = try #require(try await Self.upload(host, [7, 0, 7], token: alice).json["id"].string)
        let theirs = try #require(try await Self.upload(host, [8], token: bob).json["id"].string)
        let gone = try await host.request("DELETE", "/api/auth/account", token: alice)
        #expect(gone.status == 200 && gone.json["deleted_files"].int == 1, "\(gone.body)")
        #expect(try await Self.send(host, "GET", "/api/files/\(mine)", token: HostProcess.adminToken).status == 404)
        #expect(try await Self.send(host, "GET", "/api/files/\(theirs)", token: bob).body == [8])
        #expect(Self.storedFiles(host).count == 1)
        #expect(try await Self.fileEvents(host).filter { $0.kind == "delete" }.map(\.id) == [mine])
    }

    @Test("Temp files an earlier run left (a crash mid-upload) are removed at start; committed files stay")
    func leftovers() async throws {
        let key = "0123456789abcdef0123456789abcdef"
        let host = try await HostProcess.start(manifest: Self.manifest, files: [
            "files/tmp/\(key).part": "half an upload", "files/01/\(key)": "a committed file"])
        defer { host.stop() }
        #expect(Self.storedFiles(host) == ["01/\(key)"])
    }

    @Test("A files folder whose parents do not exist yet (a fresh copy of an example: data/files) is made with them")
    func filesFolderWithParents() async throws {
        let dir = try TestPaths.freshTempDir("files-parents")
        defer { TestPaths.removeTempDir(dir) }
        let nested = dir.appendingPathComponent("not/made/yet/files").path
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_FILES_DIR": nested])
        defer { host.stop() }
        let token = try await host.mintSession("ann")
        let r = try await Self.upload(host, [1, 2, 3], token: token)
        #expect(r.status == 201, "\(r.text)")
        #expect(FileManager.default.fileExists(atPath: nested + "/tmp"), "the folder and its tmp exist")
    }

    @Test("Without a files plugin the routes answer 501 CAPABILITY_UNAVAILABLE")
    func stub() async throws {
        let manifest = Self.manifest.replacingOccurrences(of: #""policies": []"#, with: #""policies": [], "plugins": {"files": {"use": "none"}}"#)
        let host = try await HostProcess.start(manifest: manifest)
        defer { host.stop() }
        let r = try await Self.send(host, "POST", "/api/files/upload", token: HostProcess.adminToken, body: [1, 2])
        #expect(r.status == 501 && r.json["error"]["code"].string == "CAPABILITY_UNAVAILABLE", "\(r.text)")
    }
}
