import Foundation
import Testing

/// `GET /api/sync/pull` page sizes a client can get wrong (the rest of pull is in
/// DataPlaneTests.swift).
extension DataPlaneTests {
    @Test("Pull limit below 1 reads one change, so a client following has_more gets every change and stops; a negative or non-number limit is 400 INVALID_QUERY")
    func pullLimitZero() async throws {
        let host = try await Self.start(.sqlite)
        defer { host.stop() }
        for i in 1...3 { _ = try await host.insert("Todo", #"{"title":"t\#(i)","done":false}"#) }
        var since = 0
        var seen: [Int] = []
        for _ in 0..<10 {
            let page = try await host.request("GET", "/api/sync/pull?since=\(since)&limit=0")
            #expect(page.status == 200, "\(page.body)")
            seen += page.json["changes"].items.compactMap { $0["seq"].int }
            since = try #require(page.json["cursor"]["last_seq"].int)
            if page.json["has_more"].bool != true { break }
        }
        #expect(seen == [1, 2, 3] && since == 3, "one change per page, then has_more is false: \(seen)")
        let end = try await host.request("GET", "/api/sync/pull?since=3&limit=0")
        #expect(end.json["changes"].items.isEmpty && end.json["has_more"].bool == false, "\(end.body)")
        for bad in ["-1", "abc", "1.5", "99999999999999999999", "0x10"] {
            let r = try await host.request("GET", "/api/sync/pull?since=0&limit=\(bad)")
            #expect(r.status == 400 && r.json.errorCode == "INVALID_QUERY", "limit=\(bad): \(r.status) \(r.body)")
        }
    }

    @Test("Hostile: a log of 1 MiB rows is pulled in pages of about 4 MiB, not 1,000 rows at once (anonymous readers made the host hold gigabytes); following has_more walks every change once", arguments: TestStore.all)
    func pullPagesBoundedByBytes(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let big = String(repeating: "b", count: 1 << 20)
        let id = try await host.insert("Todo", #"{"title":"\#(big)","done":false}"#)
        // Each update logs the row twice (after and before): about 2 MiB an event.
        for i in 0..<6 {
            let r = try await host.request("PATCH", "/api/entities/Todo/\(id)", json: #"{"done":\#(i % 2 == 0)}"#)
            #expect(r.status == 200, "\(r.body.prefix(200))")
        }
        var since = 0, pages = 0
        var seen: [Int] = []
        for _ in 0..<20 {
            let page = try await host.request("GET", "/api/sync/pull?since=\(since)&limit=1000")
            #expect(page.status == 200)
            let seqs = page.json["changes"].items.compactMap { $0["seq"].int }
            #expect(seqs.count <= 3, "a page holds about 4 MiB of rows: \(seqs)")
            seen += seqs
            pages += 1
            since = try #require(page.json["cursor"]["last_seq"].int)
            if page.json["has_more"].bool != true { break }
        }
        #expect(seen == Array(1...7), "every change once, in order: \(seen) in \(pages) pages")
        // Small rows still come 1,000 to a page: "Pull caps limit at 1000".
    }
}
