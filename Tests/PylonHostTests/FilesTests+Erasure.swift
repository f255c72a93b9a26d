import Foundation
import Testing

/// An upload in flight when its account ends (probe, LOW): the account is deleted or purged
/// between two pieces of the body, and the upload must then keep nothing — no row owned by
/// the erased id, no bytes. What does not end the account (a refreshed session, an API key,
/// the admin, a guest) still lands.
extension FilesTests {
    /// Bytes sent before `during` runs: more than one upload piece, so the upload has begun.
    static let firstPiece = 600_000

    /// A raw upload of `total` bytes as `token`, sent in two pieces: `during` runs after the
    /// host has begun writing the first (its temp file exists), then the rest follows.
    static func slowUpload(_ host: HostProcess, token: String, total: Int = 1_000_000,
                           during: () async throws -> Void) async throws -> Answer {
        let bytes = randomBytes(total)
        let s = try TestSocket.connect(port: host.port)
        defer { s.release() }
        try await onThread {
            try s.send(Array("POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \(token)\r\nX-Filename: slow.bin\r\nContent-Length: \(total)\r\n\r\n".utf8))
            try s.send(Array(bytes.prefix(firstPiece)))
        }
        try await eventually("the upload's temp file", timeout: 30) { storedFiles(host).contains { $0.hasPrefix("tmp/") } ? true : nil }
        try await during()
        return try await onThread {
            try s.send(Array(bytes.dropFirst(firstPiece)))
            return try readAnswer(s)
        }
    }

    /// How the account ends while its upload is in flight.
    enum Erasure: String, CaseIterable, CustomTestStringConvertible {
        case deleteAccount, adminPurge, signOutEverywhere
        var testDescription: String { rawValue }
    }

    @Test("An upload in flight when its account is deleted, purged or signed out everywhere: 401 UPLOAD_OWNER_GONE, no row, no bytes, no change-log entry; another user's file stays",
          arguments: FilesTests.stores, Erasure.allCases)
    func erasedMidUpload(store: TestStore, erasure: Erasure) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let kept = try #require(try await Self.upload(host, [8], token: bob).json["id"].string)
        let answer = try await Self.slowUpload(host, token: alice) {
            let r: (status: Int, body: String, json: Any?)
            switch erasure {
            case .deleteAccount: r = try await host.request("DELETE", "/api/auth/account", token: alice)
            case .adminPurge: r = try await host.request("DELETE", "/api/admin/users/alice/purge", token: HostProcess.adminToken)
            case .signOutEverywhere: r = try await host.request("DELETE", "/api/auth/sessions", token: alice)
            }
            #expect(r.status == 200, "\(r.body)")
        }
        #expect(answer.status == 401 && answer.json["error"]["code"].string == "UPLOAD_OWNER_GONE", "\(answer.status) \(answer.text)")
        let export = try await host.request("POST", "/api/admin/users/alice/export", token: HostProcess.adminToken)
        #expect(export.json["counts"]["_pylon_files"].int == 0, "\(export.body)")
        try await eventually("only bob's file is on disk", timeout: 20) { Self.storedFiles(host).count == 1 ? true : nil }
        #expect(Self.storedFiles(host).allSatisfy { !$0.hasPrefix("tmp/") }, "\(Self.storedFiles(host))")
        #expect(try await Self.fileEvents(host).map(\.id) == [kept])
        #expect(try await Self.send(host, "GET", "/api/files/\(kept)", token: bob).body == [8])
    }

    @Test("Uploads whose owner keeps access still land: a session refreshed mid-upload, another session kept, an API key, a guest, the admin (no owner); a guest signed out mid-upload keeps nothing",
          arguments: FilesTests.stores)
    func accessKeptMidUpload(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        // The session that began the upload is replaced by a new token: the owner still holds it.
        var fresh: String?
        let refreshed = try await Self.slowUpload(host, token: alice) {
            let r = try await host.request("POST", "/api/auth/refresh", token: alice)
            #expect(r.status == 200, "\(r.body)")
            fresh = r.json["token"].string
        }
        #expect(refreshed.status == 201 && refreshed.json["owner"].string == "alice", "\(refreshed.text)")
        let token = try #require(fresh)
        // Signing out the uploading session while another one is kept.
        let other = try await host.mintSession("alice")
        let loggedOut = try await Self.slowUpload(host, token: token) {
            let out = try await host.request("POST", "/api/auth/logout", token: token)
            #expect(out.status == 200, "\(out.body)")
        }
        #expect(loggedOut.status == 201 && loggedOut.json["owner"].string == "alice", "\(loggedOut.text)")
        // An API key's upload.
        let made = try await host.request("POST", "/api/auth/api-keys", json: #"{"name":"ci"}"#, token: other)
        let key = try #require(made.json["key"].string, "\(made.body)")
        let byKey = try await Self.upload(host, [1, 2], token: key)
        #expect(byKey.status == 201 && byKey.json["owner"].string == "alice", "\(byKey.text)")
        // The admin's upload has no owner and nothing to end.
        let admin = try await Self.slowUpload(host, token: HostProcess.adminToken) {}
        #expect(admin.status == 201 && admin.json["owner"].isNull, "\(admin.text)")
        // A guest uploads as any user; a guest who signs out mid-upload is gone for good.
        let guest = try await host.guestToken()
        let asGuest = try await Self.upload(host, [3], token: guest)
        #expect(asGuest.status == 201 && asGuest.json["owner"].string?.hasPrefix("guest_") == true, "\(asGuest.text)")
        let leaving = try await Self.slowUpload(host, token: guest) {
            let out = try await host.request("POST", "/api/auth/logout", token: guest)
            #expect(out.status == 200, "\(out.body)")
        }
        #expect(leaving.status == 401 && leaving.json["error"]["code"].string == "UPLOAD_OWNER_GONE", "\(leaving.text)")
        try await eventually("five files on disk, no temp file", timeout: 20) {
            let f = Self.storedFiles(host)
            return f.count == 5 && f.allSatisfy { !$0.hasPrefix("tmp/") } ? true : nil
        }
        #expect(try await Self.fileEvents(host).count == 5)
    }
}
