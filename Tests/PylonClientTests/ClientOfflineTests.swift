import Foundation
import Testing
@testable import PylonClient

/// The write queue against a real host: offline writes replayed exactly once after the host
/// comes back, resume from the stored cursor, pending ids mapped, refused writes rolled back.
@Suite(.serialized)
struct ClientOfflineTests {
    private static let offline = Query(where: [("title", .like("offline%"))])

    @Test func writesMadeWhileTheHostIsDownAreReplayedOnceAndSyncResumes() async throws {
        let host = try await TestHost.start()
        let store = CountingStore()
        let client = try await host.signedInClient(store: store)
        let before = try await host.admin("POST", "/api/entities/Todo", ["title": "before restart", "done": false])
        try await eventually("the row before the restart") { await client.rows("Todo").contains { $0.id == before["id"]?.stringValue } }
        let cursorBefore = try #require(await client.replica.cursor)
        let clears = await store.clears

        await host.stop()
        try await eventually("the client notices") { await client.sync.status != .live }
        var ids: [String] = []
        for n in 1...3 { ids.append(try await client.insert("Todo", ["title": .string("offline \(n)"), "done": false])) }
        try await client.update("Todo", ids[0], ["done": true])
        #expect(ids.allSatisfy { $0.hasPrefix("_pending_") })
        #expect(await client.rows("Todo", Self.offline).count == 3) // optimistic, at once

        try await host.restart()
        try await eventually("the queue drains and the host's rows come back") {
            let ops = await client.replica.ops
            let local = await client.rows("Todo", Self.offline)
            return ops.isEmpty && local.count == 3 && local.allSatisfy { !$0.id.hasPrefix("_pending_") }
        }
        let onHost = try await host.todos("offline")
        #expect(onHost.compactMap { $0["title"]?.stringValue }.sorted() == ["offline 1", "offline 2", "offline 3"])
        #expect(onHost.first { $0["title"] == "offline 1" }?["done"] == .bool(true))
        // Resumed, not resynced: the same database, the cursor went on from where it was.
        #expect(await store.clears == clears)
        let cursorAfter = try #require(await client.replica.cursor)
        #expect(cursorAfter.epoch == cursorBefore.epoch)
        #expect(cursorAfter.lastSeq > cursorBefore.lastSeq)
        let after = try await host.admin("POST", "/api/entities/Todo", ["title": "after restart", "done": false])
        try await eventually("live again") { await client.rows("Todo").contains { $0.id == after["id"]?.stringValue } }
        // Exactly once, also after the client has settled.
        #expect(try await host.todos("offline").count == 3)
        await client.stop()
        await host.dispose()
    }

    @Test func aHostThatGoesSilentIsDetectedAndAWriteMadeMeanwhileLandsOnce() async throws {
        let host = try await TestHost.start()
        defer { host.resume() }
        var options = SyncOptions()
        options.idleTimeout = .seconds(2)
        options.requestTimeout = 3
        let client = try await host.signedInClient(options: options)
        // The host stops answering without closing anything: only the silence tells.
        await host.pause()
        try await client.insert("Todo", ["title": "during silence", "done": false])
        try await eventually("offline") { await client.sync.status == .offline }
        #expect(await client.pendingWrites().count == 1)
        host.resume()
        try await eventually("the write lands and settles") {
            let ops = await client.replica.ops
            let local = await client.rows("Todo", Query(where: [("title", .eq("during silence"))]))
            return ops.isEmpty && local.count == 1 && !local[0].id.hasPrefix("_pending_")
        }
        // The push the host read while paused and the client's retry are one write (op_id).
        #expect(try await host.todos("during silence").count == 1)
        await client.stop()
        await host.dispose()
    }

    @Test func pendingIdsOfAnUpdateAndDeleteFollowTheInsert() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        await client.stop() // queue while not syncing
        let keep = try await client.insert("Todo", ["title": "mapped keep", "done": false])
        try await client.update("Todo", keep, ["priority": 3])
        let drop = try await client.insert("Todo", ["title": "mapped drop", "done": false])
        try await client.delete("Todo", drop)
        #expect(await client.rows("Todo", Query(where: [("title", .like("mapped%"))])).compactMap { $0["title"]?.stringValue } == ["mapped keep"])
        try await client.start()
        try await eventually("settled") { await client.replica.ops.isEmpty }
        let onHost = try await host.todos("mapped")
        #expect(onHost.map { "\($0["title"]?.stringValue ?? "")/\($0["priority"]?.intValue ?? -1)" } == ["mapped keep/3"])
        try await eventually("the host's id in the replica") {
            await client.rows("Todo", Query(where: [("title", .like("mapped%"))])).map(\.id) == [onHost[0]["id"]?.stringValue ?? ""]
        }
        await client.stop()
        await host.dispose()
    }

    @Test func aNewClientOnTheSameStoreResumesWithItsQueuedWrites() async throws {
        let host = try await TestHost.start()
        let store = MemoryStore()
        let tokens = MemoryTokenStorage()
        let first = try await host.signedInClient(store: store, tokens: tokens)
        let a = try await host.admin("POST", "/api/entities/Todo", ["title": "resume a", "done": false])
        try await eventually("a") { await first.rows("Todo").contains { $0.id == a["id"]?.stringValue } }
        await first.stop()
        try await first.insert("Todo", ["title": "resume queued", "done": false]) // stored, not pushed
        let b = try await host.admin("POST", "/api/entities/Todo", ["title": "resume b", "done": false])

        let second = host.client(store: store, tokens: tokens)
        try await second.start()
        try await eventually("b and the queued write") {
            let hasB = await second.rows("Todo").contains { $0.id == b["id"]?.stringValue }
            let ops = await second.replica.ops
            let onHost = try await host.todos("resume queued")
            return hasB && ops.isEmpty && onHost.count == 1
        }
        #expect(await second.rows("Todo").contains { $0.id == a["id"]?.stringValue })
        await second.stop()
        await host.dispose()
    }

    @Test func aWriteRefusedByPolicyIsRolledBackAndReported() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        let rejections = Collected(await client.rejections())
        let shown = Collected(client.liveQuery("Locked"))
        try await eventually("the first result") { shown.last != nil }
        try await client.insert("Locked", ["note": "not allowed"])
        #expect(await client.rows("Locked").count == 1) // optimistic
        try await eventually("the rejection") { rejections.all.count == 1 }
        let r = try #require(rejections.all.first)
        #expect(r.op.kind == .insert)
        #expect(r.error.code == "POLICY_DENIED", "\(r.error)")
        try await eventually("rolled back") { shown.last?.isEmpty == true }
        #expect(shown.all.contains { $0.count == 1 })
        #expect(await client.replica.ops.isEmpty)
        #expect(try await host.admin("GET", "/api/entities/Locked")["data"]?.arrayValue?.isEmpty == true)

        // A row the schema refuses (title is required) is rolled back the same way.
        try await client.insert("Todo", ["done": false, "priority": 99])
        try await eventually("the second rejection") { rejections.all.count == 2 }
        #expect(await client.rows("Todo", Query(where: [("priority", .eq(99))])).isEmpty)
        rejections.cancel()
        shown.cancel()
        await client.stop()
        await host.dispose()
    }

    @Test func anOpWhoseAnswerWasLostIsSentAgainAndAppliedOnce() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        await client.stop()
        try await client.insert("Todo", ["title": "lost answer", "done": false])
        let op = try #require(await client.replica.ops.first)
        // The push reached the host, but its answer never reached the client: the same op,
        // sent as the client sends it, with the client's token.
        let token = try #require(client.auth.token)
        let earlier = HTTP(baseURL: host.url, tokens: MemoryTokenStorage(token), timeout: 30)
        let change: JSON = ["op_id": .string(op.opId), "entity": "Todo", "kind": "insert", "row_id": .string(op.rowId),
                            "data": .object(op.data ?? [:])]
        let first = try await earlier.request("/api/sync/push", body: ["changes": [change], "client_id": "cl_earlier"])
        #expect(first["applied"]?.intValue == 1)
        try await client.start()
        try await eventually("the op is settled") { await client.replica.ops.isEmpty }
        #expect(try await host.todos("lost answer").count == 1)
        try await eventually("one row in the replica") {
            await client.rows("Todo", Query(where: [("title", .eq("lost answer"))])).count == 1
        }
        await client.stop()
        await host.dispose()
    }

    @Test func aQueueOverTheBodyLimitGoesInSmallerPushesAndOnlyAnOpTooBigAloneIsRefused() async throws {
        let host = try await TestHost.start(env: ["PYLON_MAX_BODY_BYTES": String(64 * 1024)])
        let client = try await host.signedInClient()
        let rejections = Collected(await client.rejections())
        await client.stop() // queue while not syncing: one push would carry all of them
        for n in 1...6 { try await client.insert("Todo", ["title": .string("bulky \(n) " + String(repeating: "x", count: 20_000)), "done": false]) }
        try await client.insert("Todo", ["title": .string("huge " + String(repeating: "y", count: 100_000)), "done": false])
        try await client.start()
        try await eventually("settled") { await client.replica.ops.isEmpty }
        let titles = try await host.todos("bulky").compactMap { $0["title"]?.stringValue?.split(separator: " ").prefix(2).joined(separator: " ") }
        #expect(titles.sorted() == (1...6).map { "bulky \($0)" })
        try await eventually("the rejection") { rejections.all.count == 1 }
        #expect(rejections.all.first?.op.data?["title"]?.stringValue?.hasPrefix("huge ") == true)
        #expect(rejections.all.first?.error.status == 413)
        rejections.cancel()
        await client.stop()
        await host.dispose()
    }

    @Test func aPushTheHostDoesNotTakeFromThisCallerKeepsTheOps() async throws {
        let host = try await TestHost.start()
        let tokens = MemoryTokenStorage()
        let client = try await host.signedInClient(tokens: tokens)
        let rejections = Collected(await client.rejections())
        await client.stop()
        try await client.insert("Todo", ["title": "kept through 401", "done": false])
        let good = try #require(tokens.get())
        // A dead API key: the host answers 401 and looks at no op.
        tokens.set("pk.deadbeefdeadbeef.0000000000000000000000000000000000000000000")
        await #expect(throws: PylonError.self) { try await client.queue.flush() }
        #expect(await client.replica.ops.count == 1)
        tokens.set(good)
        try await client.start()
        try await eventually("the op is settled") { await client.replica.ops.isEmpty }
        #expect(rejections.all.isEmpty)
        #expect(try await host.todos("kept through 401").count == 1)
        rejections.cancel()
        await client.stop()
        await host.dispose()
    }

    @Test func aHostThatCannotBeReachedLeavesWritesQueuedAndStopReturns() async throws {
        // Port 1: nothing listens there (a port picked as free could be taken by another test's host).
        let client = PylonClient(baseURL: URL(string: "http://127.0.0.1:1")!)
        try await client.auth.setToken("pylon_" + String(repeating: "0", count: 64))
        try await client.start()
        try await eventually("offline") { await client.sync.status == .offline }
        let id = try await client.insert("Todo", ["title": "queued", "done": false])
        #expect(await client.rows("Todo").map(\.id) == [id])
        #expect(await client.pendingWrites().count == 1)
        await client.stop()
        #expect(await client.sync.status == .stopped)
        let e = await #expect(throws: PylonError.self) { try await client.functions.call("double", ["n": 1]) }
        #expect(e?.isNetwork == true)
    }
}
