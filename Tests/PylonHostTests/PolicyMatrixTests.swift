import Foundation
import Testing

/// The policy matrix over real sockets (issue 3, DESIGN.md §4–§5): the release host, not in
/// dev mode, with an owner rule on `Note` and `Comment` (`auth.userId == data.ownerId` for
/// read, insert, update and delete) and an entity without any policy (`Secret`). Two users,
/// alice and bob, each with a session minted by the admin; every read path (list, cursor,
/// filtered query, graph query with includes, get by id, lookup, pull, WebSocket, SSE) must
/// show each user exactly their own rows, and no write path may touch the other's rows.
@Suite("Policy matrix: two users, owner rule, every path (black-box, real pylon-host)")
struct PolicyMatrixTests {
    static let manifest = """
    {"manifest_version": 1, "name": "policy-matrix", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": [],
        "relations": [{"name": "comments", "target": "Comment", "field": "noteId", "many": true}]},
       {"name": "Comment", "fields": [
          {"name": "noteId", "type": "string", "optional": false, "unique": false},
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "body", "type": "string", "optional": false, "unique": false}], "indexes": [],
        "relations": [{"name": "note", "target": "Note", "field": "noteId", "many": false}]},
       {"name": "Secret", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "own-notes", "entity": "Note",
        "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId == data.ownerId",
        "allowUpdate": "auth.userId == data.ownerId", "allowDelete": "auth.userId == data.ownerId"},
       {"name": "own-comments", "entity": "Comment",
        "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId == data.ownerId",
        "allowUpdate": "auth.userId == data.ownerId", "allowDelete": "auth.userId == data.ownerId"}]}
    """

    static let admin = HostProcess.adminToken

    /// One user's session and realtime connections (opened with `since=0` before any
    /// write, so they see the log catch-up and then live fan-out).
    struct Client {
        let name: String
        let token: String
        let ws: TestWebSocket
        let sse: TestEventStream
    }

    /// A started host (not dev) with alice, bob and an admin connected over WS and SSE.
    struct World {
        let host: HostProcess
        let alice: Client
        let bob: Client
        let adminWS: TestWebSocket
        let adminSSE: TestEventStream

        func close() {
            for c in [alice, bob] {
                c.ws.disconnect()
                c.sse.close()
            }
            adminWS.disconnect()
            adminSSE.close()
        }
    }

    static func world(compatPorts: Bool = false) async throws -> World {
        let host = try await HostProcess.start(manifest: manifest, dev: false, compatPorts: compatPorts)
        func client(_ name: String) async throws -> Client {
            let token = try await host.mintSession(name)
            let ws = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: token, label: "\(name) ws")
            let sse = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0&token=\(token)", label: "\(name) sse")
            guard sse.status == 200 else { throw RealtimeTestError("\(name) SSE: \(sse.summary)") }
            return Client(name: name, token: token, ws: ws, sse: sse)
        }
        let alice = try await client("alice")
        let bob = try await client("bob")
        let adminWS = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: admin, label: "admin ws")
        let adminSSE = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0&token=\(admin)", label: "admin sse")
        return World(host: host, alice: alice, bob: bob, adminWS: adminWS, adminSSE: adminSSE)
    }

    /// Inserts a note owned by `owner` as `owner`.
    static func note(_ host: HostProcess, _ c: Client, _ title: String) async throws -> String {
        try await host.create("Note", #"{"ownerId":\#(TestJSON.quote(c.name)),"title":\#(TestJSON.quote(title))}"#, token: c.token)
    }

    static func comment(_ host: HostProcess, _ c: Client, on note: String, _ body: String) async throws -> String {
        try await host.create("Comment", #"{"noteId":"\#(note)","ownerId":\#(TestJSON.quote(c.name)),"body":"\#(body)"}"#, token: c.token)
    }

    /// A fresh note by `c`, waited for on both of c's streams: everything committed before
    /// it has been fanned out to c (events arrive in seq order).
    @discardableResult
    static func sentinel(_ host: HostProcess, _ c: Client) async throws -> String {
        let id = try await note(host, c, "sentinel-\(UUID().uuidString)")
        try await c.ws.waitForEvent(rowID: id)
        try await c.sse.waitForEvent(rowID: id)
        return id
    }

    static func ids(_ rows: [Any?]) -> Set<String> { Set(rows.compactMap { $0["id"].string }) }
    static func sseRowIDs(_ s: TestEventStream) -> [String] { s.changeEvents.compactMap { ($0.json as Any?)["row_id"].string } }

    // MARK: - Reads

    @Test("Every read path shows each user exactly their own rows: list, cursor, filtered query, graph query with includes, get by id, lookup, pull, WS, SSE")
    func everyReadPathIsFiltered() async throws {
        let w = try await Self.world()
        let host = w.host
        defer {
            w.close()
            host.kill9() // open SSE streams hold up a graceful stop
        }
        var notes: [String: [String]] = ["alice": [], "bob": []]
        var comments: [String: [String]] = ["alice": [], "bob": []]
        var titles: [String: [String: String]] = ["alice": [:], "bob": [:]]
        // Interleaved, so every page of ids mixes both owners.
        for i in 1...4 {
            for c in [w.alice, w.bob] {
                let title = "\(c.name)-\(i)"
                let id = try await Self.note(host, c, title)
                notes[c.name]!.append(id)
                titles[c.name]![id] = title
            }
        }
        for c in [w.alice, w.bob] {
            let id = try await Self.note(host, c, "same")
            notes[c.name]!.append(id)
            titles[c.name]![id] = "same"
        }
        let aliceNote = notes["alice"]![0], bobNote = notes["bob"]![0]
        comments["alice"]!.append(try await Self.comment(host, w.alice, on: aliceNote, "alice on her note"))
        // The owner rule only looks at ownerId: bob may comment on alice's note, and only he sees it.
        comments["bob"]!.append(try await Self.comment(host, w.bob, on: aliceNote, "bob on alice's note"))
        comments["bob"]!.append(try await Self.comment(host, w.bob, on: bobNote, "bob on his note"))
        let sentinels = ["alice": try await Self.sentinel(host, w.alice), "bob": try await Self.sentinel(host, w.bob)]
        for c in [w.alice, w.bob] { notes[c.name]!.append(sentinels[c.name]!) }

        for (me, other) in [(w.alice, w.bob), (w.bob, w.alice)] {
            let own = Set(notes[me.name]!), theirs = Set(notes[other.name]!)
            let ownComments = Set(comments[me.name]!), theirComments = Set(comments[other.name]!)
            let t = me.token

            // List.
            let list = try await host.request("GET", "/api/entities/Note", token: t)
            #expect(list.status == 200, "\(me.name) list: \(list.body)")
            #expect(Self.ids(list.json["data"].items) == own, "\(me.name) list shows exactly their notes: \(list.body)")
            #expect(list.json["count"].int == own.count)
            let clist = try await host.request("GET", "/api/entities/Comment", token: t)
            #expect(Self.ids(clist.json["data"].items) == ownComments, "\(me.name) comment list: \(clist.body)")

            // Cursor pages (small pages mix both owners).
            for limit in [1, 3, 100] {
                var after: String? = nil
                var seen: [String] = []
                for _ in 0..<100 {
                    let r = try await host.request("GET", "/api/entities/Note/cursor?limit=\(limit)" + (after.map { "&after=\($0)" } ?? ""), token: t)
                    #expect(r.status == 200, "\(me.name) cursor: \(r.body)")
                    seen += r.json["data"].items.compactMap { $0["id"].string }
                    after = r.json["next_cursor"].string
                    if r.json["has_more"].bool != true || after == nil { break }
                }
                #expect(Set(seen) == own && seen.count == own.count, "\(me.name) cursor pages of \(limit): \(seen.count) rows, foreign \(Set(seen).intersection(theirs))")
            }

            // Filtered query.
            let all = try await host.request("POST", "/api/query/Note", json: "{}", token: t)
            #expect(all.status == 200, "\(all.body)")
            #expect(Self.ids(all.json.items) == own, "\(me.name) query {}: \(all.body)")
            let same = try await host.request("POST", "/api/query/Note", json: #"{"title":"same"}"#, token: t)
            #expect(Self.ids(same.json.items) == Set(titles[me.name]!.filter { $0.value == "same" }.keys),
                    "\(me.name) query title=same matches one row per owner, shows only theirs: \(same.body)")
            let like = try await host.request("POST", "/api/query/Note", json: #"{"title":{"$like":"-"},"$order":{"title":"asc"}}"#, token: t)
            #expect(Self.ids(like.json.items) == own.subtracting(titles[me.name]!.filter { $0.value == "same" }.keys),
                    "\(me.name) $like query: \(like.body)")
            let theirTitle = try await host.request("POST", "/api/query/Note", json: #"{"title":"\#(other.name)-1"}"#, token: t)
            #expect(theirTitle.status == 200 && theirTitle.json.items.isEmpty, "a query naming the other's title finds nothing: \(theirTitle.body)")
            let byOwner = try await host.request("POST", "/api/query/Note", json: #"{"ownerId":"\#(other.name)"}"#, token: t)
            #expect(byOwner.status == 200 && byOwner.json.items.isEmpty, "a query for the other's ownerId finds nothing: \(byOwner.body)")

            // Graph query, with has-many and belongs-to includes.
            let g = try await host.request("POST", "/api/query", json: #"{"Note":{"include":{"comments":{}}},"Comment":{"include":{"note":{}}}}"#, token: t)
            #expect(g.status == 200, "\(me.name) graph: \(g.body)")
            #expect(Self.ids(g.json["Note"].items) == own, "\(me.name) graph Note: \(g.body)")
            #expect(Self.ids(g.json["Comment"].items) == ownComments, "\(me.name) graph Comment: \(g.body)")
            for n in g.json["Note"].items {
                let included = Self.ids(n["comments"].items)
                #expect(included.isDisjoint(with: theirComments), "\(me.name): included comments of note \(n["id"].string ?? "?") contain the other's: \(included)")
                #expect(included.isSubset(of: ownComments))
            }
            let aliceNoteRow = g.json["Note"].items.first { $0["id"].string == aliceNote }
            if me.name == "alice" {
                #expect(Self.ids(aliceNoteRow?["comments"].items ?? []) == Set(comments["alice"]!),
                        "alice's note includes her comment, not bob's: \(aliceNoteRow ?? "nil")")
            }
            for cm in g.json["Comment"].items {
                let target = cm["note"]
                if let tid = target["id"].string {
                    #expect(own.contains(tid), "\(me.name): comment \(cm["id"].string ?? "?") includes a note they cannot read: \(target ?? "nil")")
                }
                if cm["noteId"].string.map(theirs.contains) == true {
                    #expect(target == nil || target.isNull, "\(me.name): the other's note must not be included: \(cm ?? "nil")")
                }
            }

            // Get by id and lookup.
            for id in own {
                let r = try await host.request("GET", "/api/entities/Note/\(id)", token: t)
                #expect(r.status == 200 && r.json["ownerId"].string == me.name, "\(me.name) GET own \(id): \(r.body)")
            }
            // The other's rows answer exactly as absent ones (DESIGN.md §4: no oracle by status).
            for id in theirs {
                let r = try await host.request("GET", "/api/entities/Note/\(id)", token: t)
                #expect(r.status == 404 && r.json.errorCode == "NOT_FOUND", "\(me.name) GET other's \(id) → 404: \(r.status) \(r.body)")
                let l = try await host.request("GET", "/api/lookup/Note/id/\(id)", token: t)
                #expect(l.status == 404 && l.json.errorCode == "NOT_FOUND", "\(me.name) lookup other's id: \(l.status) \(l.body)")
            }
            for c in theirComments {
                let r = try await host.request("GET", "/api/entities/Comment/\(c)", token: t)
                #expect(r.status == 404 && r.json.errorCode == "NOT_FOUND", "\(me.name) GET other's comment: \(r.status) \(r.body)")
            }
            let ownLookup = try await host.request("GET", "/api/lookup/Note/title/\(me.name)-2", token: t)
            #expect(ownLookup.status == 200 && ownLookup.json["ownerId"].string == me.name, "\(ownLookup.body)")
            let theirLookup = try await host.request("GET", "/api/lookup/Note/title/\(other.name)-2", token: t)
            #expect(theirLookup.status == 404 && theirLookup.json.errorCode == "NOT_FOUND", "\(me.name) lookup other's title: \(theirLookup.status) \(theirLookup.body)")

            // Pull.
            let pulled = try await host.pullAll(token: t)
            let pulledIDs = Set(rowIDs(pulled))
            #expect(pulledIDs == own.union(ownComments), "\(me.name) pull: only and all of their rows; foreign \(pulledIDs.intersection(theirs.union(theirComments)))")

            // WebSocket and SSE (opened before the first write).
            let wsIDs = rowIDs(me.ws.changeEvents)
            #expect(Set(wsIDs) == own.union(ownComments) && wsIDs.count == own.count + ownComments.count,
                    "\(me.name) WS: each own row once, nothing else; foreign \(Set(wsIDs).intersection(theirs.union(theirComments))): \(me.ws.summary)")
            let sseIDs = Self.sseRowIDs(me.sse)
            #expect(Set(sseIDs) == own.union(ownComments) && sseIDs.count == own.count + ownComments.count,
                    "\(me.name) SSE: foreign \(Set(sseIDs).intersection(theirs.union(theirComments))): \(me.sse.summary)")

            // A connection that resumes from the log (cursor 0) is filtered the same way.
            let lateWS = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: t, label: "\(me.name) late ws")
            let lateSSE = try await TestEventStream.connect(port: host.port, path: "/api/sync/events", token: t,
                                                            headers: ["Last-Event-ID": "0"], label: "\(me.name) late sse")
            let mySentinel = try await Self.note(host, me, "late-sentinel")
            try await lateWS.waitForEvent(rowID: mySentinel)
            try await lateSSE.waitForEvent(rowID: mySentinel)
            let expected = own.union(ownComments).union([mySentinel])
            #expect(Set(rowIDs(lateWS.changeEvents)) == expected, "\(me.name) catch-up WS: \(lateWS.summary)")
            #expect(Set(Self.sseRowIDs(lateSSE)) == expected, "\(me.name) catch-up SSE: \(lateSSE.summary)")
            lateWS.disconnect()
            lateSSE.close()
            notes[me.name]!.append(mySentinel)
        }

        // The admin sees everything.
        let everything = Set(notes.values.joined()).union(comments.values.joined())
        let adminList = try await host.request("GET", "/api/entities/Note", token: Self.admin)
        #expect(Self.ids(adminList.json["data"].items) == Set(notes.values.joined()))
        try await eventually("every row on the admin's WS and SSE (\(w.adminWS.summary); \(w.adminSSE.summary))") {
            Set(rowIDs(w.adminWS.changeEvents)) == everything && Set(Self.sseRowIDs(w.adminSSE)) == everything ? true : nil
        }

        // Anonymous callers see no Note rows on any list path.
        let anonList = try await host.request("GET", "/api/entities/Note")
        #expect(anonList.status == 403 || (anonList.status == 200 && anonList.json["data"].items.isEmpty), "\(anonList.body)")
        let anonQuery = try await host.request("POST", "/api/query/Note", json: "{}")
        #expect(anonQuery.status == 403 || (anonQuery.status == 200 && anonQuery.json.items.isEmpty), "\(anonQuery.body)")
        #expect(try await host.pullAll(token: nil).isEmpty, "an anonymous pull sees no event")
    }

    @Test("limit/offset paging counts only readable rows: GET ?limit&offset, POST /api/query/E {$limit,$offset}, graph limit")
    func pagingCountsReadableRows() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let tokens = ["alice": try await host.mintSession("alice"), "bob": try await host.mintSession("bob")]
        var own: [String: [String]] = ["alice": [], "bob": []]
        // Interleaved inserts: ids grow with time, so every id-ordered page mixes both owners.
        for i in 1...6 {
            for name in ["alice", "bob"] {
                own[name]!.append(try await host.create("Note", #"{"ownerId":"\#(name)","title":"\#(name)-\#(i)"}"#, token: tokens[name]!))
            }
        }
        for name in ["alice", "bob"] {
            let t = tokens[name]!, mine = own[name]!
            for limit in [2, 3] {
                // What Pylon clients' loadPage does: advance the offset by the page size and
                // stop at the first page shorter than the limit.
                var listed: [String] = [], queried: [String] = []
                var firstList: (status: Int, body: String, json: Any?)?
                var offset = 0
                for _ in 0..<50 {
                    let l = try await host.request("GET", "/api/entities/Note?limit=\(limit)&offset=\(offset)", token: t)
                    let q = try await host.request("POST", "/api/query/Note", json: #"{"$limit":\#(limit),"$offset":\#(offset)}"#, token: t)
                    if firstList == nil { firstList = l }
                    let lp = l.json["data"].items.compactMap { $0["id"].string }, qp = q.json.items.compactMap { $0["id"].string }
                    listed += lp
                    queried += qp
                    offset += limit
                    if lp.count < limit && qp.count < limit { break }
                }
                #expect(listed == mine,
                        "\(name): GET /api/entities/Note?limit=\(limit)&offset=0,\(limit),… must page through exactly their \(mine.count) rows in id order, got \(listed.count) (first page: \(firstList?.body ?? ""))")
                #expect(queried == mine,
                        "\(name): POST /api/query/Note {\"$limit\":\(limit),\"$offset\":…} must page through exactly their \(mine.count) rows, got \(queried.count)")
            }
            let g = try await host.request("POST", "/api/query", json: #"{"Note":{"limit":3}}"#, token: t)
            #expect(g.json["Note"].items.compactMap { $0["id"].string } == Array(mine.prefix(3)), "\(name) graph limit 3: \(g.body)")
        }
    }

    // MARK: - Writes

    @Test("No user can update, delete or take over the other's note (entity routes, link, push): 404 for a row they cannot read, 403 for their own, no change event; partial updates and deletes reach exactly the owner over WS and SSE")
    func writesAreCheckedAndEventsReachOnlyTheOwner() async throws {
        let w = try await Self.world()
        let host = w.host
        defer {
            w.close()
            host.kill9()
        }
        let a1 = try await Self.note(host, w.alice, "alice-1")
        let a2 = try await Self.note(host, w.alice, "alice-2")
        let b1 = try await Self.note(host, w.bob, "bob-1")
        let ac = try await Self.comment(host, w.alice, on: a1, "alice comment")
        try await Self.sentinel(host, w.alice)
        try await Self.sentinel(host, w.bob)
        let before = try await host.logHead().newest
        let bob = w.bob.token, alice = w.alice.token

        func expectDenied(_ r: (status: Int, body: String, json: Any?), _ what: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == 403 && r.json.errorCode == "POLICY_DENIED", "\(what) → \(r.status) \(r.body)", sourceLocation: sourceLocation)
        }
        // A row the caller cannot read answers as an absent one: 404, never 403.
        func expectHidden(_ r: (status: Int, body: String, json: Any?), _ what: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == 404 && r.json.errorCode == "NOT_FOUND", "\(what) → \(r.status) \(r.body)", sourceLocation: sourceLocation)
        }
        expectHidden(try await host.request("PATCH", "/api/entities/Note/\(a1)", json: #"{"title":"hacked"}"#, token: bob), "bob renames alice's note")
        expectHidden(try await host.request("PATCH", "/api/entities/Note/\(a1)", json: #"{"ownerId":"bob"}"#, token: bob), "bob takes alice's note")
        expectHidden(try await host.request("PATCH", "/api/entities/Note/\(a1)", json: #"{"ownerId":"bob","title":"mine now"}"#, token: bob), "bob takes and renames alice's note")
        expectDenied(try await host.request("PATCH", "/api/entities/Note/\(a2)", json: #"{"ownerId":"bob"}"#, token: alice), "alice gives her note to bob")
        expectHidden(try await host.request("PATCH", "/api/entities/Note/\(b1)", json: #"{"ownerId":"alice"}"#, token: alice), "alice takes bob's note")
        expectHidden(try await host.request("DELETE", "/api/entities/Note/\(a1)", token: bob), "bob deletes alice's note")
        expectDenied(try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"alice","title":"forged"}"#, token: bob), "bob inserts a note owned by alice")
        expectHidden(try await host.request("POST", "/api/link", json: #"{"entity":"Comment","id":"\#(ac)","relation":"note","target_id":"\#(b1)"}"#, token: bob), "bob relinks alice's comment")
        expectHidden(try await host.request("DELETE", "/api/entities/Comment/\(ac)", token: bob), "bob deletes alice's comment")

        // Push: each change checked on its own; the denied ones are errors, the rest apply.
        let push = #"""
        {"client_id":"bob-device","changes":[
          {"entity":"Note","row_id":"_pending_b2","kind":"insert","data":{"ownerId":"bob","title":"bob-2"},"op_id":"b-1"},
          {"entity":"Note","row_id":"_pending_f","kind":"insert","data":{"ownerId":"alice","title":"forged"},"op_id":"b-2"},
          {"entity":"Note","row_id":"\#(a1)","kind":"update","data":{"title":"hacked"},"op_id":"b-3"},
          {"entity":"Note","row_id":"\#(a1)","kind":"update","data":{"ownerId":"bob"},"op_id":"b-4"},
          {"entity":"Note","row_id":"\#(a2)","kind":"delete","op_id":"b-5"},
          {"entity":"Note","row_id":"\#(b1)","kind":"update","data":{"ownerId":"alice"},"op_id":"b-6"},
          {"entity":"Note","row_id":"\#(b1)","kind":"update","data":{"title":"bob-1 edited"},"op_id":"b-7"}
        ]}
        """#
        let pr = try await host.request("POST", "/api/sync/push", json: push, token: bob)
        #expect(pr.status == 200, "\(pr.body)")
        // Changes to alice's rows, which bob cannot read, answer as changes to absent rows:
        // an update is NOT_FOUND, a delete of an absent row is idempotent ("applied",
        // nothing changes); his forged insert and his hand-over of his own note are denied.
        #expect(pr.json["applied"].int == 3, "bob's own insert and edit apply, the delete of a row he cannot see is a no-op: \(pr.body)")
        #expect(pr.json["errors"].items.count == 4, "four refused changes: \(pr.body)")
        let statuses = pr.json["results"].items.map { $0["status"].string ?? "?" }
        #expect(statuses == ["applied", "error", "error", "error", "applied", "error", "applied"], "\(pr.body)")
        let codes = pr.json["results"].items.filter { $0["status"].string == "error" }.map { $0["code"].string ?? "?" }
        #expect(codes == ["POLICY_DENIED", "NOT_FOUND", "NOT_FOUND", "POLICY_DENIED"], "\(pr.body)")
        let b2 = try #require(pr.json["id_map"]["_pending_b2"].string, "\(pr.body)")
        #expect(pr.json["id_map"]["_pending_f"] == nil, "\(pr.body)")

        // Nothing of alice's changed.
        for (id, title) in [(a1, "alice-1"), (a2, "alice-2")] {
            let r = try await host.request("GET", "/api/entities/Note/\(id)", token: alice)
            #expect(r.status == 200 && r.json["ownerId"].string == "alice" && r.json["title"].string == title, "\(r.body)")
        }
        let acRow = try await host.request("GET", "/api/entities/Comment/\(ac)", token: Self.admin)
        #expect(acRow.json["noteId"].string == a1, "\(acRow.body)")
        let b1Row = try await host.request("GET", "/api/entities/Note/\(b1)", token: bob)
        #expect(b1Row.json["ownerId"].string == "bob" && b1Row.json["title"].string == "bob-1 edited", "\(b1Row.body)")
        let forged = try await host.request("POST", "/api/query/Note", json: #"{"title":"forged"}"#, token: Self.admin)
        #expect(forged.json.items.isEmpty, "\(forged.body)")

        // Only the two applied changes reached the log.
        let logged = try await host.pullAll(since: before, token: Self.admin)
        #expect(logged.map { "\($0["kind"].string ?? "?") \($0["row_id"].string ?? "?")" } == ["insert \(b2)", "update \(b1)"],
                "denied writes leave no change event: \(logged)")

        // Alice edits one field and deletes a note: the update (with the full row) and the
        // delete reach alice and the admin, never bob.
        let p = try await host.request("PATCH", "/api/entities/Note/\(a1)", json: #"{"title":"alice-1 renamed"}"#, token: alice)
        #expect(p.status == 200, "\(p.body)")
        let d = try await host.request("DELETE", "/api/entities/Note/\(a2)", token: alice)
        #expect(d.status == 200, "\(d.body)")
        try await w.alice.ws.waitForEvent(rowID: a2, kind: "delete")
        try await w.alice.sse.waitForEvent(rowID: a2, kind: "delete")
        let upd = try #require(w.alice.ws.changeEvents.last { $0["row_id"].string == a1 && $0["kind"].string == "update" }, "\(w.alice.ws.summary)")
        #expect(upd["data"]["title"].string == "alice-1 renamed" && upd["data"]["ownerId"].string == "alice",
                "a partial update is delivered as the full row: \(upd ?? "nil")")
        let sseUpd = try #require(w.alice.sse.changeEvents.last { ($0.json as Any?)["row_id"].string == a1 && ($0.json as Any?)["kind"].string == "update" })
        #expect((sseUpd.json as Any?)["data"]["ownerId"].string == "alice", "\(sseUpd.data)")
        let del = try #require(w.alice.ws.changeEvents.last { $0["row_id"].string == a2 })
        #expect(del["kind"].string == "delete" && del["data"] == nil, "\(del ?? "nil")")
        try await w.adminWS.waitForEvent(rowID: a2, kind: "delete")
        try await w.adminSSE.waitForEvent(rowID: a2, kind: "delete")

        // Bob's pushed rows reach bob only; alice's rows never reach bob.
        try await w.bob.ws.waitForEvent(rowID: b2)
        try await Self.sentinel(host, w.bob)
        try await Self.sentinel(host, w.alice)
        let aliceRows: Set<String> = [a1, a2, ac]
        #expect(Set(rowIDs(w.bob.ws.changeEvents)).isDisjoint(with: aliceRows), "bob's WS got alice's rows: \(w.bob.ws.summary)")
        #expect(Set(Self.sseRowIDs(w.bob.sse)).isDisjoint(with: aliceRows), "bob's SSE got alice's rows: \(w.bob.sse.summary)")
        #expect(!rowIDs(w.alice.ws.changeEvents).contains(b2) && !rowIDs(w.alice.ws.changeEvents).contains(b1), "\(w.alice.ws.summary)")
        #expect(!Self.sseRowIDs(w.alice.sse).contains(b2) && !Self.sseRowIDs(w.alice.sse).contains(b1), "\(w.alice.sse.summary)")
        // Each user got exactly one event per own write, in order, nothing twice.
        let aliceKinds = w.alice.ws.changeEvents.filter { [a1, a2].contains($0["row_id"].string ?? "") }.map { "\($0["kind"].string ?? "") \($0["row_id"].string ?? "")" }
        #expect(aliceKinds == ["insert \(a1)", "insert \(a2)", "update \(a1)", "delete \(a2)"], "\(aliceKinds)")
        let bobKinds = w.bob.ws.changeEvents.filter { [b1, b2].contains($0["row_id"].string ?? "") }.map { "\($0["kind"].string ?? "") \($0["row_id"].string ?? "")" }
        #expect(bobKinds == ["insert \(b1)", "insert \(b2)", "update \(b1)"], "\(bobKinds)")

        // Pull: alice sees her update and delete, bob does not.
        let alicePull = try await host.pullAll(since: before, token: alice)
        #expect(alicePull.map { "\($0["kind"].string ?? "") \($0["row_id"].string ?? "")" }.filter { !$0.contains(b1) && !$0.contains(b2) }.prefix(2)
                    == ["update \(a1)", "delete \(a2)"], "\(alicePull)")
        #expect(Set(rowIDs(try await host.pullAll(since: before, token: bob))).isDisjoint(with: aliceRows))
    }

    @Test("A note the admin moves from alice to bob leaves alice's replica and joins bob's: each user's WS, SSE and pull replica equals what they can list")
    func ownershipTransferKeepsReplicasEqualToReadableRows() async throws {
        let w = try await Self.world()
        let host = w.host
        defer {
            w.close()
            host.kill9()
        }
        let moved = try await Self.note(host, w.alice, "alice's, soon bob's")
        _ = try await Self.note(host, w.alice, "alice keeps this")
        _ = try await Self.note(host, w.bob, "bob's own")
        try await Self.sentinel(host, w.alice)
        try await Self.sentinel(host, w.bob)

        let r = try await host.request("PATCH", "/api/entities/Note/\(moved)", json: #"{"ownerId":"bob"}"#, token: Self.admin)
        #expect(r.status == 200, "\(r.body)")
        try await Self.sentinel(host, w.alice)
        try await Self.sentinel(host, w.bob)

        for c in [w.alice, w.bob] {
            let list = try await host.request("GET", "/api/entities/Note", token: c.token)
            let readable = Self.ids(list.json["data"].items)
            var wsReplica: [String: [String: Any]] = [:]
            applyEvents(c.ws.changeEvents, to: &wsReplica)
            var sseReplica: [String: [String: Any]] = [:]
            applyEvents(c.sse.changeEvents.map { $0.json }, to: &sseReplica)
            var pullReplica: [String: [String: Any]] = [:]
            applyEvents(try await host.pullAll(token: c.token), to: &pullReplica)
            #expect(Set(wsReplica.keys) == readable,
                    "\(c.name)'s WS replica must hold exactly the notes \(c.name) can read; extra \(Set(wsReplica.keys).subtracting(readable)) (moved = \(moved)), missing \(readable.subtracting(wsReplica.keys))")
            #expect(Set(sseReplica.keys) == readable,
                    "\(c.name)'s SSE replica: extra \(Set(sseReplica.keys).subtracting(readable)), missing \(readable.subtracting(sseReplica.keys))")
            #expect(Set(pullReplica.keys) == readable,
                    "\(c.name)'s pull replica: extra \(Set(pullReplica.keys).subtracting(readable)), missing \(readable.subtracting(pullReplica.keys))")
            for (id, row) in wsReplica where readable.contains(id) {
                #expect(row["ownerId"] as? String == c.name, "\(c.name)'s replica row \(id) has owner \(row["ownerId"] ?? "nil")")
            }
        }
    }

    // MARK: - No policy

    @Test("An entity without a policy is admin-only outside dev mode on every path (and open in --dev)")
    func entityWithoutPolicyIsAdminOnly() async throws {
        let w = try await Self.world()
        let host = w.host
        defer {
            w.close()
            host.kill9()
        }
        let secret = try await host.create("Secret", #"{"title":"classified"}"#, token: Self.admin)
        let alice = w.alice.token
        for (method, path, body) in [
            ("GET", "/api/entities/Secret", nil), ("GET", "/api/entities/Secret/\(secret)", nil),
            ("GET", "/api/entities/Secret/cursor", nil), ("GET", "/api/lookup/Secret/title/classified", nil),
            ("POST", "/api/entities/Secret", #"{"title":"mine"}"#), ("PATCH", "/api/entities/Secret/\(secret)", #"{"title":"x"}"#),
            ("DELETE", "/api/entities/Secret/\(secret)", nil), ("POST", "/api/query/Secret", "{}"),
            ("POST", "/api/query", #"{"Secret":{}}"#),
        ] as [(String, String, String?)] {
            for token in [alice, nil] as [String?] {
                let r = try await host.request(method, path, json: body, token: token)
                #expect(r.status == 403, "\(token == nil ? "anonymous" : "alice") \(method) \(path) → 403: \(r.status) \(r.body)")
                #expect(r.json.errorCode == "POLICY_DENIED", "\(r.body)")
            }
        }
        let push = try await host.request("POST", "/api/sync/push", json: #"{"changes":[{"entity":"Secret","row_id":"_pending_s","kind":"insert","data":{"title":"pushed"}}]}"#, token: alice)
        #expect(push.json["applied"].int == 0 && push.json["errors"].items.count == 1, "\(push.body)")
        let still = try await host.request("GET", "/api/entities/Secret/\(secret)", token: Self.admin)
        #expect(still.status == 200 && still.json["title"].string == "classified", "\(still.body)")
        let count = try await host.request("GET", "/api/entities/Secret", token: Self.admin)
        #expect(count.json["count"].int == 1, "\(count.body)")

        // Not on pull, WS or SSE either.
        let later = try await host.create("Secret", #"{"title":"later"}"#, token: Self.admin)
        try await w.adminWS.waitForEvent(rowID: later)
        try await w.adminSSE.waitForEvent(rowID: later)
        try await Self.sentinel(host, w.alice)
        #expect(Set(rowIDs(try await host.pullAll(token: alice))).isDisjoint(with: [secret, later]))
        #expect(Set(rowIDs(w.alice.ws.changeEvents)).isDisjoint(with: [secret, later]), "\(w.alice.ws.summary)")
        #expect(Set(Self.sseRowIDs(w.alice.sse)).isDisjoint(with: [secret, later]), "\(w.alice.sse.summary)")
        #expect(w.alice.ws.changeEvents.allSatisfy { $0["entity"].string != "Secret" })

        // The same manifest in --dev: the entity without a policy is open.
        let dev = try await HostProcess.start(manifest: Self.manifest, dev: true)
        defer { dev.stop() }
        let devAlice = try await dev.mintSession("alice")
        let created = try await dev.request("POST", "/api/entities/Secret", json: #"{"title":"open"}"#, token: devAlice)
        #expect(created.status == 201, "\(created.body)")
        let listed = try await dev.request("GET", "/api/entities/Secret", token: devAlice)
        #expect(listed.status == 200 && listed.json["count"].int == 1, "\(listed.body)")
    }
}
