import Foundation
import Testing
@testable import PylonData
import PylonJSON

/// A change-log entry's `before` (the row before an update or delete, read only to judge
/// who may see the change) is stored as the fields the update changed (`ChangeLogBefore`):
/// a PATCH of one small field of a large row no longer logs the row twice, every reader
/// shows exactly what it showed when `before` was stored whole, and entries written whole
/// by older hosts read as before.
@Suite("Change log: an update's before is stored as its changed fields (black-box, real pylon-host, SQLite and Postgres)")
struct ChangeLogBeforeTests {
    /// `Note` (ownerId, title) with an owner-only rule, not in dev mode.
    static let manifest = PushScopeTests.manifest

    static let admin = HostProcess.adminToken

    /// A second host on `url`'s database (Postgres): it learns of the first host's writes
    /// from the change log (its tailer), which rebuilds `before` from what is stored.
    static func secondHost(on url: String) async throws -> HostProcess {
        let store = TestStore(name: "postgres", pluginsDir: { TestPaths.pluginsDir }, provision: { _, _ in
            TestStoreBackend(storeConfig: [("use", .string("postgres")), ("url", .string(url)), ("readers", .int(1))], sqliteFile: nil)
        })
        return try await HostProcess.start(manifest: manifest, dev: false, store: store)
    }

    /// Events as comparable text: each event's JSON with its keys sorted.
    static func canonical(_ events: [Any?]) -> [String] {
        events.map { e in
            guard let e, let d = try? JSONSerialization.data(withJSONObject: e, options: [.sortedKeys]) else { return "unreadable" }
            return String(decoding: d, as: UTF8.self)
        }
    }

    /// `kind row` of each event, for the expectations.
    static func kinds(_ events: [Any?], _ names: [String: String]) -> [String] {
        events.map { "\($0["kind"].string ?? "?") \(names[$0["row_id"].string ?? ""] ?? "?")" }
    }

    static func pull(_ host: HostProcess, _ token: String) async throws -> [Any?] {
        let r = try await host.request("GET", "/api/sync/pull?since=0&limit=1000", token: token)
        guard r.status == 200 else { throw RealtimeTestError("pull → \(r.status) \(r.body)") }
        return r.json["changes"].items
    }

    /// What a reader sees of the whole log from a cursor: pull, a WebSocket and an SSE
    /// stream opened with `since=0` (they read the log, then wait for new writes).
    static func fromTheLog(_ host: HostProcess, _ token: String, count: Int) async throws -> [[String]] {
        let ws = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: token, label: "ws since=0")
        defer { ws.disconnect() }
        let sse = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0&token=\(token)", label: "sse since=0")
        defer { sse.close() }
        let fromWS = try await ws.waitForChangeEvents(count)
        let fromSSE = try await sse.waitForChangeEvents(count).map { $0.json as Any? }
        return [canonical(try await pull(host, token)), canonical(fromWS), canonical(fromSSE)]
    }

    @Test("Updates, a row moved out of and back into sight, deletes: pull, WS and SSE from a cursor, live streams (and on Postgres another host's) agree, with before stored compactly and with whole before rows written the old way", arguments: [TestStore.sqlite, TestStore.postgres])
    func everyReaderAgrees(store: TestStore) async throws {
        let a = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { a.stop() }
        var b: HostProcess?
        if let url = a.storeURL { b = try await Self.secondHost(on: url) }
        defer { b?.stop() }
        let alice = try await a.mintSession("alice")
        let bob = try await a.mintSession("bob")
        // Live subscribers, before any write.
        let aliceLive = try await TestWebSocket.connect(port: a.port, path: "/api/sync/ws?since=0", token: alice, label: "alice live")
        let bobLive = try await TestWebSocket.connect(port: a.port, path: "/api/sync/ws?since=0", token: bob, label: "bob live")
        var aliceOnB: TestWebSocket?, bobOnB: TestWebSocket?
        if let b {
            aliceOnB = try await TestWebSocket.connect(port: b.port, path: "/api/sync/ws?since=0", token: alice, label: "alice live on B")
            bobOnB = try await TestWebSocket.connect(port: b.port, path: "/api/sync/ws?since=0", token: bob, label: "bob live on B")
        }
        defer { for ws in [aliceLive, bobLive, aliceOnB, bobOnB].compactMap({ $0 }) { ws.disconnect() } }

        func patch(_ id: String, _ json: String) async throws {
            let r = try await a.request("PATCH", "/api/entities/Note/\(id)", json: json, token: Self.admin)
            guard r.status == 200 else { throw RealtimeTestError("PATCH \(json) → \(r.status) \(r.body)") }
        }
        func delete(_ id: String) async throws {
            let r = try await a.request("DELETE", "/api/entities/Note/\(id)", token: Self.admin)
            guard r.status == 200 || r.status == 204 else { throw RealtimeTestError("DELETE → \(r.status) \(r.body)") }
        }
        let n1 = try await a.create("Note", #"{"ownerId":"alice","title":"t1"}"#)
        try await patch(n1, #"{"title":"t2"}"#)                 // alice: update
        try await patch(n1, #"{"ownerId":"bob"}"#)              // alice: a delete (out of sight); bob: update
        try await patch(n1, #"{"title":"t3"}"#)                 // bob only
        try await patch(n1, #"{"ownerId":"alice","title":"t4"}"#) // alice: update; bob: a delete
        let n2 = try await a.create("Note", #"{"ownerId":"bob","title":"b1"}"#)
        try await delete(n1)                                     // alice: delete
        try await patch(n2, #"{"title":"b1"}"#)                 // nothing changes: bob: update
        try await delete(n2)                                     // bob: delete
        let names = [n1: "n1", n2: "n2"]

        let alicePulled = try await Self.pull(a, alice)
        let bobPulled = try await Self.pull(a, bob)
        #expect(Self.kinds(alicePulled, names) == ["insert n1", "update n1", "delete n1", "update n1", "delete n1"], "\(alicePulled)")
        #expect(Self.kinds(bobPulled, names) == ["update n1", "update n1", "delete n1", "insert n2", "update n2", "delete n2"], "\(bobPulled)")
        #expect(alicePulled[2]["data"] == nil, "a row moved out of sight is sent as a delete, without its data")

        // The updates' before is stored as their changed fields (the no-op update's as none).
        let compact = try await a.sql("SELECT before FROM _pylon_changes WHERE kind = 'update' ORDER BY seq")
            .split(whereSeparator: \.isNewline).map(String.init)
        #expect(compact == [#"~{"title":"t1"}"#, #"~{"ownerId":"alice"}"#, #"~{"title":"t2"}"#, #"~{"ownerId":"bob","title":"t3"}"#, "~{}"], "\(compact)")

        let aliceExpected = Self.canonical(alicePulled), bobExpected = Self.canonical(bobPulled)
        let adminExpected = Self.canonical(try await Self.pull(a, Self.admin))
        #expect(Self.canonical(try await aliceLive.waitForChangeEvents(5)) == aliceExpected)
        #expect(Self.canonical(try await bobLive.waitForChangeEvents(6)) == bobExpected)
        if let aliceOnB, let bobOnB {
            #expect(Self.canonical(try await aliceOnB.waitForChangeEvents(5)) == aliceExpected, "host B (tailer)")
            #expect(Self.canonical(try await bobOnB.waitForChangeEvents(6)) == bobExpected, "host B (tailer)")
        }
        for readers in try await Self.fromTheLog(a, alice, count: 5) { #expect(readers == aliceExpected) }
        for readers in try await Self.fromTheLog(a, bob, count: 6) { #expect(readers == bobExpected) }

        // The same log as an older host wrote it: each update's before whole (the row as
        // the entry before it left it). Every reader shows the same.
        try await a.sql("""
            UPDATE _pylon_changes SET before = (SELECT p.data FROM _pylon_changes p WHERE p.entity = _pylon_changes.entity \
            AND p.row_id = _pylon_changes.row_id AND p.seq < _pylon_changes.seq ORDER BY p.seq DESC LIMIT 1) WHERE kind = 'update'
            """)
        let whole = try await a.sql("SELECT COUNT(*) FROM _pylon_changes WHERE kind = 'update' AND before LIKE '{%'")
        #expect(whole.trimmingCharacters(in: .whitespacesAndNewlines) == "5")
        for readers in try await Self.fromTheLog(a, alice, count: 5) { #expect(readers == aliceExpected, "old-format log") }
        for readers in try await Self.fromTheLog(a, bob, count: 6) { #expect(readers == bobExpected, "old-format log") }
        #expect(Self.canonical(try await Self.pull(a, Self.admin)) == adminExpected)
    }

    @Test("N small PATCHes of a 1 MB row grow the change log by about the row each, not twice the row", arguments: [TestStore.sqlite, TestStore.postgres])
    func smallPatchesOfALargeRow(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { host.stop() }
        let row = 1 << 20, patches = 8
        let id = try await host.create("Note", #"{"ownerId":"alice","title":"\#(String(repeating: "x", count: row))"}"#)
        func logged() async throws -> Int {
            let text = try await host.sql("SELECT COALESCE(SUM(LENGTH(data)), 0) + COALESCE(SUM(LENGTH(before)), 0) FROM _pylon_changes")
            return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        let start = try await logged()
        for i in 1...patches {
            let r = try await host.request("PATCH", "/api/entities/Note/\(id)", json: #"{"ownerId":"owner-\#(i)"}"#, token: Self.admin)
            #expect(r.status == 200, "\(r.body.prefix(300))")
        }
        let grown = try await logged() - start
        // Each entry holds the row after the patch (its data, sent on the wire); whole, its
        // before made that twice.
        #expect(grown > patches * row && grown < patches * row + patches * 1024,
                "\(patches) patches of a \(row)-byte row grew the log by \(grown) bytes")
        // Readers still see each update whole (pages end past 4 MiB of rows: several pulls).
        var pulled: [Any?] = [], cursor = 0
        while true {
            let r = try await host.request("GET", "/api/sync/pull?since=\(cursor)", token: Self.admin)
            pulled += r.json["changes"].items
            guard r.status == 200, let next = r.json["cursor"]["last_seq"].int, next > cursor else { break }
            cursor = next
            if r.json["has_more"].bool != true { break }
        }
        #expect(pulled.count == 1 + patches)
        let last = pulled.last ?? nil
        #expect(last["data"]["ownerId"].string == "owner-\(patches)" && (last["data"]["title"].string?.count ?? 0) == row)
    }

    @Test("Unit: before is rebuilt byte for byte; values that only compare equal (1 and 1.0, 0.0 and -0.0, canonically equivalent strings) are stored, and rows of another shape are stored whole")
    func units() throws {
        func roundTrip(_ before: JSONValue, _ data: JSONValue) throws -> (stored: String, read: String) {
            let stored = try #require(ChangeLogBefore.stored(before, data: data))
            // As the log reads it back: both from their stored text.
            let readData = try JSONParser.parse(JSONWriter.string(data))
            let read = try #require(ChangeLogBefore.read(stored, data: readData))
            return (stored, JSONWriter.string(read))
        }
        let before = JSONValue.object([("id", "r1"), ("a", .int(1)), ("b", .double(0.0)), ("c", .string("e\u{301}")),
                                       ("d", .array([.int(1), .object([("x", .null)])])), ("e", "same")])
        let data = JSONValue.object([("id", "r1"), ("a", .double(1.0)), ("b", .double(-0.0)), ("c", .string("\u{e9}")),
                                     ("d", .array([.int(1), .object([("x", .null)])])), ("e", "same")])
        let r = try roundTrip(before, data)
        #expect(r.stored.hasPrefix("~") && !r.stored.contains("same") && r.stored.contains("\"a\"") && r.stored.contains("\"b\"") && r.stored.contains("\"c\""), "\(r.stored)")
        #expect(Array(r.read.utf8) == Array(JSONWriter.string(before).utf8), "\(r.read)")

        // Another key order, another key, a duplicate key, no data (a delete): stored whole.
        let reordered = JSONValue.object([("id", "r1"), ("e", "same"), ("a", .int(1)), ("b", .double(0.0)), ("c", "x"), ("d", .null)])
        let shapes: [JSONValue?] = [reordered, .object([("id", "r1")]), .object([("id", "r1"), ("id", "r2"), ("a", 1), ("b", 1), ("c", 1), ("d", 1)]), nil]
        for other in shapes {
            let stored = try #require(ChangeLogBefore.stored(before, data: other))
            #expect(stored == JSONWriter.string(before))
            #expect(ChangeLogBefore.read(stored, data: other) == before)
        }
        // A whole before from an older host reads as it is; an unreadable one as none.
        #expect(ChangeLogBefore.read(#"{"id":"r1","a":1}"#, data: data) == .object([("id", "r1"), ("a", .int(1))]))
        #expect(ChangeLogBefore.read("~not json", data: data) == nil)
        #expect(ChangeLogBefore.read(#"~{"a":1}"#, data: nil) == nil)
        #expect(ChangeLogBefore.stored(nil, data: data) == nil)
    }
}
