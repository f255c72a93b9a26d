import Foundation
import Testing

/// Reads too large for a store are refused at validation with a stable 400 code, the same
/// limits on every store, instead of reaching the store and failing there with 500
/// STORE_ERROR (PostgreSQL binds at most 65,535 parameters and selects at most 1,664
/// columns; SQLite takes LIKE patterns up to 50,000 bytes and 2,000 columns). Each limit is
/// tested at its edge (answered) and one past it (refused).
@Suite("Query size limits: FILTER_TOO_LARGE, LIKE_PATTERN_TOO_LONG, AGGREGATE_TOO_LARGE (black-box, real pylon-host)", .serialized)
struct QueryLimitsTests {
    static func strings(_ n: Int, _ prefix: String = "v") -> String {
        "[" + (0..<n).map { "\"\(prefix)\($0)\"" }.joined(separator: ",") + "]"
    }

    static func expectRefused(_ r: (status: Int, body: String, json: Any?), _ code: String, _ what: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 400 && r.json.errorCode == code, "\(what): \(r.status) \(r.body.prefix(300))", sourceLocation: sourceLocation)
    }

    static func expectAnswered(_ r: (status: Int, body: String, json: Any?), _ what: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 200, "\(what): \(r.status) \(r.body.prefix(300))", sourceLocation: sourceLocation)
    }

    @Test("A filter compares against at most 10,000 values ($in items and operands together), on query, aggregate where and graph queries", arguments: TestStore.all)
    func filterValues(store: TestStore) async throws {
        let host = try await DataPlaneTests.start(store)
        defer { host.stop() }
        _ = try await host.insert("Todo", #"{"title":"v7","done":false}"#)
        let edge = try await host.request("POST", "/api/query/Todo", json: #"{"title":{"$in":\#(Self.strings(10_000))}}"#)
        Self.expectAnswered(edge, "$in of 10,000")
        #expect(edge.json.items.count == 1, "the edge query still finds the row: \(edge.body.prefix(200))")
        for (what, path, body) in [
            ("$in of 10,001", "/api/query/Todo", #"{"title":{"$in":\#(Self.strings(10_001))}}"#),
            ("$in of 70,000 (over PostgreSQL's 65,535 parameters)", "/api/query/Todo", #"{"title":{"$in":\#(Self.strings(70_000))}}"#),
            ("two $in lists of 6,000", "/api/query/Todo", #"{"title":{"$in":\#(Self.strings(6_000))},"id":{"$in":\#(Self.strings(6_000))}}"#),
            ("aggregate where $in of 10,001", "/api/aggregate/Todo", #"{"count":"*","where":{"title":{"$in":\#(Self.strings(10_001))}}}"#),
            ("graph where $in of 10,001", "/api/query", #"{"Todo":{"where":{"title":{"$in":\#(Self.strings(10_001))}}}}"#),
        ] {
            Self.expectRefused(try await host.request("POST", path, json: body), "FILTER_TOO_LARGE", what)
        }
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("$like text is at most 256 bytes of UTF-8 (256 wildcard characters, escaped to twice that, still run)", arguments: TestStore.all)
    func likeLength(store: TestStore) async throws {
        let host = try await DataPlaneTests.start(store)
        defer { host.stop() }
        _ = try await host.insert("Todo", #"{"title":"\#(String(repeating: "a", count: 256))","done":false}"#)
        func like(_ text: String) async throws -> (status: Int, body: String, json: Any?) {
            try await host.request("POST", "/api/query/Todo", json: #"{"title":{"$like":\#(TestJSON.quote(text))}}"#)
        }
        let edge = try await like(String(repeating: "a", count: 256))
        Self.expectAnswered(edge, "$like of 256 bytes")
        #expect(edge.json.items.count == 1, "\(edge.body.prefix(200))")
        Self.expectAnswered(try await like(String(repeating: "%", count: 256)), "$like of 256 % signs")
        Self.expectAnswered(try await like(String(repeating: "é", count: 128)), "$like of 128 two-byte characters")
        Self.expectRefused(try await like(String(repeating: "a", count: 257)), "LIKE_PATTERN_TOO_LONG", "$like of 257 bytes")
        Self.expectRefused(try await like(String(repeating: "é", count: 129)), "LIKE_PATTERN_TOO_LONG", "$like of 258 bytes in 129 characters")
        Self.expectRefused(try await like(String(repeating: "a", count: 60_000)), "LIKE_PATTERN_TOO_LONG", "$like of 60,000 bytes (over SQLite's pattern limit)")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("A read that runs past the store's read_timeout_ms is stopped: 503 QUERY_TIMEOUT, and the reader serves the next request (a $like over megabytes of the caller's own rows)", arguments: [TestStore.sqlite, TestStore.postgres])
    func readTimeout(store: TestStore) async throws {
        // 100 ms, against a read that costs seconds: 200 rows of 50,000 characters, each
        // compared with a 256-character pattern at every position.
        let manifest = DataPlaneTests.manifest.replacingOccurrences(of: #""plugins": {"store": {"use": "sqlite"}}"#,
            with: #""plugins": {"store": {"use": "sqlite", "read_timeout_ms": 100}}"#)
        #expect(manifest.contains("read_timeout_ms"))
        let host = try await HostProcess.start(manifest: manifest, store: store)
        defer { host.stop() }
        let big = String(repeating: "a", count: 50_000)
        let rows = Array(repeating: #"{"op":"insert","entity":"Todo","data":{"title":"\#(big)","done":false}}"#, count: 50).joined(separator: ",")
        for _ in 0..<4 {
            let batch = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(rows)]}"#, token: HostProcess.adminToken)
            #expect(batch.status == 200, "\(batch.body.prefix(300))")
        }
        let pattern = String(repeating: "a", count: 255) + "b"
        let slow = try await host.request("POST", "/api/query/Todo", json: #"{"title":{"$like":"\#(pattern)"}}"#)
        #expect(slow.status == 503 && slow.json.errorCode == "QUERY_TIMEOUT", "\(slow.status) \(slow.body.prefix(300))")
        let quick = try await host.request("POST", "/api/query/Todo", json: #"{"done":false,"$limit":1}"#)
        #expect(quick.status == 200 && quick.json.items.count == 1, "\(quick.status) \(quick.body.prefix(200))")
        let list = try await host.request("GET", "/api/entities/Todo?limit=1")
        #expect(list.status == 200, "\(list.body.prefix(200))")
    }

    @Test("An aggregate asks for at most 256 columns (groupBy fields and measures together)", arguments: TestStore.all)
    func aggregateColumns(store: TestStore) async throws {
        let host = try await DataPlaneTests.start(store)
        defer { host.stop() }
        _ = try await host.insert("Todo", #"{"title":"x","done":false,"priority":2}"#)
        func fields(_ name: String, _ n: Int) -> String { "[" + Array(repeating: "\"\(name)\"", count: n).joined(separator: ",") + "]" }
        func aggregate(_ body: String) async throws -> (status: Int, body: String, json: Any?) {
            try await host.request("POST", "/api/aggregate/Todo", json: body)
        }
        Self.expectAnswered(try await aggregate(#"{"count":"*","groupBy":\#(fields("title", 255))}"#), "count and 255 groupBy fields")
        Self.expectAnswered(try await aggregate(#"{"sum":\#(fields("priority", 256))}"#), "256 sums")
        Self.expectRefused(try await aggregate(#"{"count":"*","groupBy":\#(fields("title", 256))}"#), "AGGREGATE_TOO_LARGE", "count and 256 groupBy fields")
        Self.expectRefused(try await aggregate(#"{"count":"*","groupBy":\#(fields("title", 2_000))}"#), "AGGREGATE_TOO_LARGE", "2,000 groupBy fields")
        Self.expectRefused(try await aggregate(#"{"sum":\#(fields("priority", 5_000))}"#), "AGGREGATE_TOO_LARGE", "5,000 sums")
        Self.expectRefused(try await aggregate(#"{"sum":\#(fields("priority", 200)),"max":\#(fields("priority", 57))}"#), "AGGREGATE_TOO_LARGE", "200 sums and 57 maxes")
        #expect(try await host.request("GET", "/health").status == 200)
    }
}
