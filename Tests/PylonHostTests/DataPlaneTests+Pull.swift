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
}
