import Foundation
import Testing
@testable import PylonClient

/// Sync against a real host: pull from zero then WebSocket, live queries, the 410 resync,
/// the cursor moving only after a stored commit, tombstones, a user switch.
@Suite(.serialized)
struct ClientSyncTests {
    private static func titles(_ rows: [Row]) -> [String] { rows.map { $0["title"]?.stringValue ?? "?" } }

    @Test func syncFromZeroThenLiveChangesAndCRUD() async throws {
        let host = try await TestHost.start()
        for i in 0..<120 { try await host.admin("POST", "/api/entities/Todo", ["title": .string("old \(i)"), "done": false]) }
        let client = try await host.signedInClient()
        try await eventually("120 rows") { await client.rows("Todo").count == 120 }

        let created = try await host.admin("POST", "/api/entities/Todo", ["title": "fresh", "done": false])
        let id = try #require(created["id"]?.stringValue)
        try await eventually("the live insert") { await client.rows("Todo").contains { $0.id == id } }
        try await host.admin("PATCH", "/api/entities/Todo/\(id)", ["done": true])
        try await eventually("the live update") {
            await client.rows("Todo", Query(where: [("title", .eq("fresh"))])).first?["done"] == .bool(true)
        }
        try await host.admin("DELETE", "/api/entities/Todo/\(id)")
        try await eventually("the live delete") { await !client.rows("Todo").contains { $0.id == id } }

        // A burst (one push of 200 rows by someone else) arrives over the WebSocket whole,
        // and the cursor ends at the host's newest seq.
        let burst: [JSON] = (0..<200).map { i in
            ["op_id": .string("burst-\(i)"), "entity": "Todo", "kind": "insert", "row_id": .string("_pending_burst_\(i)"),
             "data": ["title": .string("burst \(i)"), "done": false]]
        }
        let pushed = try await host.admin("POST", "/api/sync/push", ["changes": .array(burst), "client_id": "cl_burst"])
        let newest = try #require(pushed["cursor"]?["last_seq"]?.intValue)
        try await client.sync.waitForSeq(newest, timeout: .seconds(120))
        #expect(await client.rows("Todo", Query(where: [("title", .like("burst %"))])).count == 200)

        // The client's own writes: shown at once, then on the host with the host's id.
        let pending = try await client.insert("Todo", ["title": "mine", "done": false])
        #expect(pending.hasPrefix("_pending_"))
        #expect(await client.rows("Todo", Query(where: [("title", .eq("mine"))])).count == 1)
        try await eventually("pushed and synced") {
            let queued = await client.pendingWrites()
            let onHost = try await host.todos("mine")
            let local = await client.rows("Todo", Query(where: [("title", .eq("mine"))]))
            return queued.isEmpty && !onHost.isEmpty && local.count == 1 && !local[0].id.hasPrefix("_pending_")
        }
        let serverId = try #require(try await host.todos("mine").first?["id"]?.stringValue)
        try await client.update("Todo", serverId, ["done": true])
        try await eventually("the update on the host") { try await host.todos("mine").first?["done"] == .bool(true) }
        try await client.delete("Todo", serverId)
        try await eventually("the delete on the host") { try await host.todos("mine").isEmpty }
        try await eventually("and in the replica") { await client.rows("Todo", Query(where: [("title", .eq("mine"))])).isEmpty }
        await client.stop()
        await host.dispose()
    }

    @Test func liveQueriesFilterSortLimitAndEmitOnChange() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        let query = Query(where: [("done", .eq(false)), ("priority", .gte(2))], orderBy: [("priority", .desc)], limit: 2)
        let seen = Collected(client.liveQuery("Todo", query))
        try await eventually("the first result") { seen.last != nil }
        #expect(seen.last?.isEmpty == true)
        let add = { (title: String, priority: Int64) in
            try await host.admin("POST", "/api/entities/Todo", ["title": .string(title), "done": false, "priority": .int(priority)])
        }
        _ = try await add("low", 1)
        _ = try await add("mid", 2)
        try await eventually("mid shows") { seen.last.map(Self.titles) == ["mid"] }
        _ = try await add("high", 5)
        try await eventually("high first") { seen.last.map(Self.titles) == ["high", "mid"] }
        _ = try await add("top", 9)
        try await eventually("limit 2") { seen.last.map(Self.titles) == ["top", "high"] }
        // A change outside the result emits nothing.
        let emitted = seen.all.count
        let other = try await add("other low", 0)
        try await eventually("the replica has it") { await client.rows("Todo").contains { $0.id == other["id"]?.stringValue } }
        #expect(seen.all.count == emitted)
        // Optimistic writes count as well.
        try await client.insert("Todo", ["title": "mine", "done": false, "priority": 7])
        try await eventually("mine shows") { seen.last.map(Self.titles) == ["top", "mine"] }
        seen.cancel()
        await client.stop()
        await host.dispose()
    }

    @Test func staleCursorFromAnotherDatabaseResyncsFromZero() async throws {
        let host = try await TestHost.start()
        try await host.admin("POST", "/api/entities/Todo", ["title": "kept", "done": false])
        let store = CountingStore()
        let client = host.client(store: store)
        _ = try await client.auth.register(email: "resync-\(UUID().uuidString.prefix(8))@example.com", password: "correct horse battery")
        // Signing in wiped the store; now plant a cursor of another database and a row the host never had.
        var stale = StoreCommit()
        stale.putRows = [("Todo", ["id": "ghost", "title": "ghost", "done": false])]
        stale.cursor = Cursor(lastSeq: 3, epoch: "not-this-database")
        try await store.commit(stale)
        let clearsBefore = await store.clears
        try await client.start()
        try await eventually("resynced") { await client.rows("Todo").contains { $0["title"] == "kept" } }
        #expect(await store.clears > clearsBefore)
        #expect(await !client.rows("Todo").contains { $0.id == "ghost" })
        #expect(await client.replica.cursor?.epoch != "not-this-database")
        await client.stop()
        await host.dispose()
    }

    @Test func theWebSocketReportsAStaleCursorAsResync() async throws {
        let host = try await TestHost.start()
        try await host.admin("POST", "/api/entities/Todo", ["title": "one", "done": false])
        let guest = try await host.client().auth.guest()
        let ws = try await WebSocketConnection.connect(baseURL: host.url, path: "/api/sync/ws?since=1&epoch=not-this-database",
                                                       headers: [("Authorization", "Bearer \(guest.token)")])
        let frames = Collected(AsyncStream<String> { continuation in
            Task {
                _ = try? await ws.run(onOpen: {}, onText: { continuation.yield($0) })
                continuation.finish()
            }
        })
        try await eventually("the resync notice") { frames.all.contains { $0.contains("RESYNC_REQUIRED") } }
        ws.close()
        await host.dispose()
    }

    @Test func theCursorMovesOnlyAfterTheRowsAreStored() async throws {
        let host = try await TestHost.start()
        let store = CountingStore()
        let client = try await host.signedInClient(store: store)
        await store.failRowCommits(1)
        let before = await client.replica.cursor?.lastSeq ?? 0
        let a = try await host.admin("POST", "/api/entities/Todo", ["title": "after a failed commit", "done": false])
        try await eventually("the row arrives on the retry") { await client.rows("Todo").contains { $0.id == a["id"]?.stringValue } }
        #expect(await store.failNextRowCommits == 0)
        let after = try #require(await client.replica.cursor)
        #expect(after.lastSeq > before)
        let snap = try await store.load()
        #expect(snap.rows["Todo"]?[a["id"]?.stringValue ?? ""] != nil)
        #expect(snap.cursor == after)
        await client.stop()
        await host.dispose()
    }

    @Test func anOldInsertReplayedAfterADeleteNeverResurrectsTheRow() async throws {
        let replica = Replica(store: MemoryStore())
        let c = { (n: Int64) in Cursor(lastSeq: n, epoch: "e") }
        try await replica.apply([ChangeEvent(seq: 1, entity: "Todo", rowId: "r1", kind: .insert, data: ["title": "a"])], cursor: c(1))
        try await replica.apply([ChangeEvent(seq: 5, entity: "Todo", rowId: "r1", kind: .delete)], cursor: c(5))
        // A stream that started earlier delivers the insert and an update again, in one batch.
        await replica.setCursorForTesting(c(0))
        try await replica.apply([ChangeEvent(seq: 1, entity: "Todo", rowId: "r1", kind: .insert, data: ["title": "a"]),
                                 ChangeEvent(seq: 2, entity: "Todo", rowId: "r1", kind: .update, data: ["done": true])],
                                cursor: c(5))
        #expect(await replica.visible("Todo").isEmpty)
    }

    @Test func signingInAsSomeoneElseWipesTheReplicaAndSyncsAgain() async throws {
        let host = try await TestHost.start()
        try await host.admin("POST", "/api/entities/Todo", ["title": "shared", "done": false])
        let store = CountingStore()
        let client = try await host.signedInClient(store: store)
        try await eventually("the row") { await client.rows("Todo").count == 1 }
        let clears = await store.clears
        let other = try await client.auth.guest()
        #expect(await store.clears == clears + 1)
        try await eventually("live again with the row") {
            let live = await client.sync.status == .live
            let count = await client.rows("Todo").count
            return live && count == 1
        }
        #expect(try await client.auth.me()["user_id"]?.stringValue == other.userId)
        await client.stop()
        await host.dispose()
    }
}
