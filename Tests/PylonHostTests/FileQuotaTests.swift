import Foundation
import Testing

/// Per-user file quotas and the orphaned-bytes sweep, black-box over real sockets with the
/// real FilesLocal plugin. Quotas are checked in the transaction that records an upload,
/// so concurrent uploads cannot pass them together; refused uploads leave no bytes. The
/// sweep removes bytes no row names once they are older than the grace period, and never
/// a live file's or a fresh one's.
@Suite("Files: per-user quotas and the orphan sweep (black-box)")
struct FileQuotaTests {
    static let quotaEnv = ["PYLON_FILES_MAX_BYTES_PER_USER": "100000", "PYLON_FILES_MAX_FILES_PER_USER": "3"]

    static func usage(_ host: HostProcess, _ token: String) async throws -> Any? {
        let r = try await FilesTests.send(host, "GET", "/api/files/usage", token: token)
        #expect(r.status == 200, "\(r.text)")
        return r.json
    }

    static func code(_ a: FilesTests.Answer) -> String? { a.json["error"]["code"].string }

    @Test("Quotas: bytes (413) and files (403) per user, announced, chunked or multipart; other users and the admin token unaffected; usage reports both; nothing kept from a refusal", arguments: FilesTests.stores)
    func quotas(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest, env: Self.quotaEnv, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let bytes = FilesTests.randomBytes(60_000)
        let first = try #require(try await FilesTests.upload(host, Array(bytes.prefix(40_000)), token: alice).json["id"].string)
        #expect(try await FilesTests.upload(host, Array(bytes.prefix(40_000)), token: alice).status == 201)

        // 80 000 used: 30 000 more would pass 100 000, whichever way the body comes.
        let announced = try await FilesTests.upload(host, Array(bytes.prefix(30_000)), token: alice)
        #expect(announced.status == 413 && Self.code(announced) == "FILE_QUOTA_EXCEEDED", "\(announced.text)")
        #expect(announced.json["error"]["message"].string?.contains("100000") == true, "the message says the limit: \(announced.text)")
        var chunked = Array("POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \(alice)\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        for start in stride(from: 0, to: 30_000, by: 8192) {
            let piece = bytes[start..<min(start + 8192, 30_000)]
            chunked += Array("\(String(piece.count, radix: 16))\r\n".utf8) + piece + [13, 10]
        }
        chunked += Array("0\r\n\r\n".utf8)
        let streamed = try await FilesTests.exchange(host, chunked)
        #expect(streamed.status == 413 && Self.code(streamed) == "FILE_QUOTA_EXCEEDED", "\(streamed.text)")
        let mp = try await FilesTests.send(host, "POST", "/api/files/upload", token: alice,
                                           headers: [("Content-Type", "multipart/form-data; boundary=----pylon-test-7MA4YWxk")],
                                           body: FilesTests.multipart(Array(bytes.prefix(30_000)), filename: "big.bin", type: "application/octet-stream"))
        #expect(mp.status == 413 && Self.code(mp) == "FILE_QUOTA_EXCEEDED", "\(mp.text)")

        // Exactly up to the byte limit fits; then the file count is the limit.
        #expect(try await FilesTests.upload(host, Array(bytes.prefix(20_000)), token: alice).status == 201)
        let fourth = try await FilesTests.upload(host, [1], token: alice)
        #expect(fourth.status == 403 && Self.code(fourth) == "FILE_QUOTA_EXCEEDED", "\(fourth.text)")
        #expect(fourth.json["error"]["message"].string?.contains("3 per user") == true, "\(fourth.text)")
        let used = try await Self.usage(host, alice)
        #expect(used["files"].int == 3 && used["bytes"].int == 100_000 && used["max_files"].int == 3 && used["max_bytes"].int == 100_000,
                "\(String(describing: used))")

        // Others are not affected; the admin token is exempt (its files have no owner).
        #expect(try await FilesTests.upload(host, bytes, token: bob).status == 201)
        for _ in 0..<2 { #expect(try await FilesTests.upload(host, FilesTests.randomBytes(150_000), token: HostProcess.adminToken).status == 201) }
        let admin = try await Self.usage(host, HostProcess.adminToken)
        #expect(admin["files"].int == 2 && admin["max_bytes"] is NSNull, "\(String(describing: admin))")
        #expect(try await FilesTests.send(host, "GET", "/api/files/usage").status == 401)

        // Deleting frees room.
        #expect(try await FilesTests.send(host, "DELETE", "/api/files/\(first)", token: alice).status == 200)
        #expect(try await FilesTests.upload(host, [1, 2, 3], token: alice).status == 201)
        // No refused upload left bytes: one stored file per row (alice 3, bob 1, admin 2).
        try await eventually("the refused uploads' bytes are gone", timeout: 20) {
            FilesTests.storedFiles(host).filter { !$0.hasPrefix("tmp/") }.count == 6 ? true : nil
        }
    }

    @Test("Concurrent uploads cannot pass the quota together: the insert checks it in its transaction", arguments: FilesTests.stores)
    func concurrent(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest, env: ["PYLON_FILES_MAX_BYTES_PER_USER": "100000"], store: store)
        defer { host.stop() }
        let carol = try await host.mintSession("carol")
        let bytes = FilesTests.randomBytes(30_000)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<10 { group.addTask { try await FilesTests.upload(host, bytes, token: carol).status } }
            var out: [Int] = []
            for try await s in group { out.append(s) }
            return out
        }
        #expect(statuses.filter { $0 == 201 }.count == 3, "three of 30 000 bytes fit in 100 000: \(statuses)")
        #expect(statuses.allSatisfy { $0 == 201 || $0 == 413 }, "\(statuses)")
        let used = try await Self.usage(host, carol)
        #expect(used["files"].int == 3 && used["bytes"].int == 90_000, "\(String(describing: used))")
        try await eventually("only the stored uploads' bytes remain", timeout: 20) {
            FilesTests.storedFiles(host).filter { !$0.hasPrefix("tmp/") }.count == 3 ? true : nil
        }
    }

    /// Plants bytes under the host's files folder as a crash would leave them, `age` old.
    static func plant(_ host: HostProcess, key: String, age: TimeInterval) throws -> String {
        let folder = host.directory.appendingPathComponent("files/\(key.prefix(2))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent(key).path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("orphaned bytes".utf8)))
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: path)
        return path
    }

    @Test("The sweep removes old bytes no row names; a live file (however old) and fresh bytes stay; admin only", arguments: FilesTests.stores)
    func sweep(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = FilesTests.randomBytes(5000)
        let live = try #require(try await FilesTests.upload(host, bytes, token: alice).json["id"].string)
        // The live file's bytes made old: its row still names them.
        let livePath = try #require(FilesTests.storedFiles(host).first { !$0.hasPrefix("tmp/") })
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3 * 3600)],
                                              ofItemAtPath: host.directory.appendingPathComponent("files/" + livePath).path)
        let orphans = try ["00", "7f", "ff"].map { p in try Self.plant(host, key: p + String(repeating: "a", count: 30), age: 2 * 3600) }
        let fresh = try Self.plant(host, key: "ab" + String(repeating: "c", count: 30), age: 60)

        #expect(try await FilesTests.send(host, "POST", "/api/files/sweep", token: alice).status == 403)
        let r = try await FilesTests.send(host, "POST", "/api/files/sweep", token: HostProcess.adminToken)
        #expect(r.status == 200 && r.json["removed"].int == 3 && r.json["listed"].int == 5 && r.json["bytes_removed"].int == 3 * 14, "\(r.text)")
        #expect(orphans.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        #expect(FileManager.default.fileExists(atPath: fresh), "bytes younger than the grace period stay")
        let back = try await FilesTests.send(host, "GET", "/api/files/\(live)", token: alice)
        #expect(back.status == 200 && back.body == bytes)
        let again = try await FilesTests.send(host, "POST", "/api/files/sweep", token: HostProcess.adminToken)
        #expect(again.json["removed"].int == 0, "\(again.text)")
    }

    @Test("With PYLON_FILES_SWEEP_SECS the sweep runs on its own")
    func periodicSweep() async throws {
        let host = try await HostProcess.start(manifest: FilesTests.manifest, env: ["PYLON_FILES_SWEEP_SECS": "1"])
        defer { host.stop() }
        let orphan = try Self.plant(host, key: String(repeating: "d", count: 32), age: 2 * 3600)
        try await eventually("the periodic sweep removes the orphan", timeout: 60) {
            FileManager.default.fileExists(atPath: orphan) ? nil : true
        }
    }
}
