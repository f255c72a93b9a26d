import Foundation
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// `POST /api/search/E` and the `$search` filter key (pylon-core.md §2.7, §6.1) against
/// the real release host on every store (`TestStore.all`: FTS5 on the SQLite-dialect
/// stores, tsvector on Postgres): matching, ranking, facets, sort, paging, the index
/// following every write path (and rollbacks), policies, and schema changes that add,
/// rebuild and drop the index on a database that already holds rows. Where the engines
/// differ (accents, stop words, query syntax) the expectation says so.
@Suite("Search (black-box, real pylon-host)", .serialized)
struct SearchTests {
    static let admin = HostProcess.adminToken

    static func manifest(search: String? = #"{"text": ["title", "body"], "facets": ["brand", "inStock", "stars"], "sortable": ["price"]}"#,
                         policies: String = "[]") -> String {
        let s = search.map { #", "search": \#($0)"# } ?? ""
        return """
        {"manifest_version": 1, "name": "search-test", "version": "1",
         "entities": [
           {"name": "Product", "fields": [
              {"name": "title", "type": "string"},
              {"name": "body", "type": "richtext", "optional": true},
              {"name": "brand", "type": "string"},
              {"name": "price", "type": "float"},
              {"name": "inStock", "type": "bool"},
              {"name": "stars", "type": "int", "optional": true},
              {"name": "rank", "type": "int", "optional": true},
              {"name": "ownerId", "type": "string", "optional": true}]\(s)},
           {"name": "Plain", "fields": [{"name": "title", "type": "string"}]}
         ],
         "routes": [], "queries": [], "actions": [], "policies": \(policies)}
        """
    }

    static let products = [
        #"{"title": "Red running shoes", "body": "light and fast", "brand": "acme", "price": 59.5, "inStock": true, "stars": 5}"#,
        #"{"title": "Blue shoes", "brand": "zoom", "price": 30, "inStock": false, "stars": 4}"#,
        #"{"title": "Red hat", "body": "wool, warm, café style", "brand": "acme", "price": 12, "inStock": true}"#,
        #"{"title": "Green scarf", "body": "red stripes", "brand": "knit", "price": 20, "inStock": true, "stars": 4}"#,
    ]

    static func seeded(_ store: TestStore, _ manifest: String = manifest(), dev: Bool = true) async throws -> (HostProcess, [String]) {
        let host = try await HostProcess.start(manifest: manifest, dev: dev, store: store)
        var ids: [String] = []
        for p in products { ids.append(try await host.create("Product", p)) }
        return (host, ids)
    }

    static func search(_ host: HostProcess, _ body: String, entity: String = "Product", token: String? = admin)
        async throws -> (status: Int, body: String, json: Any?)
    {
        try await host.request("POST", "/api/search/\(entity)", json: body, token: token)
    }

    /// Postgres's english text-search configuration drops stop words and keeps accents;
    /// FTS5 (unicode61, remove_diacritics) does neither.
    static func isPostgres(_ store: TestStore) -> Bool { store.name == TestStore.postgres.name }

    static func titles(_ json: Any?) -> [String] {
        json["hits"].items.compactMap { $0["title"].string }
    }

    @Test("Text matches every word, the last as a prefix; best match first; total and tookMs", arguments: TestStore.all)
    func textMatching(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        let red = try await Self.search(host, #"{"query": "red"}"#)
        #expect(red.status == 200, "\(red.body)")
        // A match in the title (listed first in search.text) outranks one in the body.
        let ranked = Self.titles(red.json)
        #expect(Set(ranked.prefix(2)) == ["Red hat", "Red running shoes"] && ranked.last == "Green scarf", "\(red.body)")
        #expect(red.json["total"].int == 3)
        #expect(red.json["tookMs"].int != nil)
        #expect(red.json["facetCounts"].object?.isEmpty == true)
        // Typed rows: booleans as booleans, floats as floats, a field named "rank" intact.
        let hat = red.json["hits"].items.first { $0["title"].string == "Red hat" } ?? nil
        #expect(hat["inStock"].bool == true && hat["price"].double == 12.0 && hat["rank"].isNull)

        let prefix = try await Self.search(host, #"{"query": "red sho"}"#)
        #expect(Self.titles(prefix.json) == ["Red running shoes"], "\(prefix.body)")
        // Case does not matter (nor accents, on FTS5); words in the body count.
        let accent = try await Self.search(host, Self.isPostgres(store) ? #"{"query": "CAFÉ"}"# : #"{"query": "CAFE"}"#)
        #expect(Self.titles(accent.json) == ["Red hat"], "\(accent.body)")
        let none = try await Self.search(host, #"{"query": "purple"}"#)
        #expect(none.status == 200 && none.json["total"].int == 0 && Self.titles(none.json).isEmpty)
    }

    @Test("Search syntax in the user's text is plain text: quotes, operators, brackets never fail", arguments: TestStore.all)
    func syntaxIsPlainText(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        for q in [#"\"OR( -:"#, "red AND (", "NEAR(red shoes)", "*", "title:red", "\\\\", "-red", "red OR", "\\\"\\\""] {
            let r = try await Self.search(host, #"{"query": "\#(q)"}"#)
            #expect(r.status == 200, "query \(q): \(r.body)")
        }
        let r = try await Self.search(host, #"{"query": "red AND ("}"#)
        // "AND" is an ordinary word here: only the shoes ("light and fast") have both; on
        // Postgres it is a stop word, so every red product matches.
        #expect(Self.titles(r.json).count == (Self.isPostgres(store) ? 3 : 1), "\(r.body)")
        let quoted = try await Self.search(host, #"{"query": "\"red\" -shoes"}"#)
        #expect(Self.titles(quoted.json) == ["Red running shoes"], "\(quoted.body)")
    }

    @Test("Filters (equality and operators), facet counts over the matched rows, sort, page and page_size", arguments: TestStore.all)
    func filtersFacetsSortPaging(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        let facets = try await Self.search(host, #"{"query": "red", "facets": ["brand", "inStock", "stars"]}"#)
        #expect(facets.status == 200, "\(facets.body)")
        #expect(facets.json["facetCounts"]["brand"].object?.mapValues { $0 as? Int } == ["acme": 2, "knit": 1])
        #expect(facets.json["facetCounts"]["inStock"].object?.mapValues { $0 as? Int } == ["true": 3])
        #expect(facets.json["facetCounts"]["stars"].object?.mapValues { $0 as? Int } == ["5": 1, "4": 1, "null": 1])

        let filtered = try await Self.search(host, #"{"query": "red", "filters": {"brand": "acme", "price": {"$lt": 50}}}"#)
        #expect(Self.titles(filtered.json) == ["Red hat"], "\(filtered.body)")
        #expect(filtered.json["total"].int == 1)

        let browse = try await Self.search(host, #"{"filters": {"inStock": true}, "facets": ["brand"], "sort": ["price", "desc"]}"#)
        #expect(Self.titles(browse.json) == ["Red running shoes", "Green scarf", "Red hat"], "\(browse.body)")
        #expect(browse.json["facetCounts"]["brand"].object?.mapValues { $0 as? Int } == ["acme": 2, "knit": 1])

        let sorted = try await Self.search(host, #"{"query": "red", "sort": ["price", "asc"]}"#)
        #expect(Self.titles(sorted.json) == ["Red hat", "Green scarf", "Red running shoes"], "\(sorted.body)")
        let objectSort = try await Self.search(host, #"{"query": "red", "sort": {"price": "desc"}}"#)
        #expect(Self.titles(objectSort.json) == ["Red running shoes", "Green scarf", "Red hat"], "\(objectSort.body)")

        var seen: [String] = []
        for page in 0..<3 {
            let r = try await Self.search(host, #"{"sort": ["price", "asc"], "page": \#(page), "page_size": 2}"#)
            #expect(r.json["total"].int == 4, "\(r.body)")
            seen += Self.titles(r.json)
        }
        #expect(seen == ["Red hat", "Green scarf", "Blue shoes", "Red running shoes"])
        // page_size is capped at 100, not refused.
        let big = try await Self.search(host, #"{"page_size": 5000}"#)
        #expect(big.status == 200 && Self.titles(big.json).count == 4, "\(big.body)")
    }

    @Test("The index follows inserts, updates, deletes, batch, transact and push; a rollback leaves it untouched", arguments: TestStore.all)
    func indexFollowsWrites(_ store: TestStore) async throws {
        let (host, ids) = try await Self.seeded(store)
        func hits(_ q: String) async throws -> [String] {
            let r = try await Self.search(host, #"{"query": "\#(q)"}"#)
            #expect(r.status == 200, "\(r.body)")
            return Self.titles(r.json)
        }
        // Update a text field: the old word is gone, the new one found.
        let patch = try await host.request("PATCH", "/api/entities/Product/\(ids[1])", json: #"{"title": "Navy boots"}"#, token: Self.admin)
        #expect(patch.status == 200, "\(patch.body)")
        #expect(try await hits("blue").isEmpty)
        #expect(try await hits("navy") == ["Navy boots"])
        // Updating a non-text field keeps the row findable.
        _ = try await host.request("PATCH", "/api/entities/Product/\(ids[1])", json: #"{"price": 31}"#, token: Self.admin)
        #expect(try await hits("navy") == ["Navy boots"])
        // Clearing a text field to null.
        _ = try await host.request("PATCH", "/api/entities/Product/\(ids[2])", json: #"{"body": null}"#, token: Self.admin)
        #expect(try await hits("wool").isEmpty)
        #expect(try await hits("hat") == ["Red hat"])
        // Delete.
        let del = try await host.request("DELETE", "/api/entities/Product/\(ids[3])", token: Self.admin)
        #expect(del.status == 200)
        #expect(try await hits("scarf").isEmpty)

        // A transaction that fails leaves neither the row nor its index entry.
        let tx = try await host.request("POST", "/api/transact", json: """
            [{"op": "insert", "entity": "Product", "data": {"title": "Ghost lamp", "brand": "x", "price": 1, "inStock": true}},
             {"op": "update", "entity": "Product", "id": "\(ids[0])", "data": {"title": "Haunted shoes"}},
             {"op": "insert", "entity": "Product", "data": {"title": "Broken"}}]
            """, token: Self.admin)
        #expect(tx.json["committed"].bool == false, "\(tx.body)")
        #expect(try await hits("ghost").isEmpty)
        #expect(try await hits("haunted").isEmpty)
        #expect(try await hits("running") == ["Red running shoes"])

        // Batch and push write through the same index.
        let batch = try await host.request("POST", "/api/batch", json: """
            {"operations": [{"op": "insert", "entity": "Product", "data": {"title": "Batch kite", "brand": "b", "price": 3, "inStock": true}}]}
            """, token: Self.admin)
        #expect(batch.json["succeeded"].int == 1, "\(batch.body)")
        #expect(try await hits("kite") == ["Batch kite"])
        let push = try await host.request("POST", "/api/sync/push", json: """
            {"client_id": "c1", "changes": [{"op_id": "op-1", "entity": "Product", "row_id": "_pending_1", "kind": "insert",
              "data": {"title": "Pushed yoyo", "brand": "p", "price": 2, "inStock": false}}]}
            """, token: Self.admin)
        #expect(push.status == 200, "\(push.body)")
        #expect(try await hits("yoyo") == ["Pushed yoyo"])

        // Many rows inserted concurrently each get their own index entry.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    for i in 0..<10 {
                        _ = try await host.create("Product", #"{"title": "bulk item w\#(w)n\#(i)", "brand": "bulk", "price": \#(i), "inStock": true}"#)
                    }
                }
            }
            try await group.waitForAll()
        }
        let bulk = try await Self.search(host, #"{"query": "bulk", "page_size": 100, "facets": ["brand"]}"#)
        #expect(bulk.json["total"].int == 40, "\(bulk.body)")
        #expect(Set(Self.titles(bulk.json)).count == 40)
    }

    @Test("$search in POST /api/query: raw FTS5 syntax, best first, combined with filters; bad syntax is 400", arguments: TestStore.all)
    func searchFilterKey(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        let either = try await host.request("POST", "/api/query/Product", json: #"{"$search": "hat OR scarf", "brand": "acme"}"#, token: Self.admin)
        #expect(either.status == 200, "\(either.body)")
        #expect(either.json.items.compactMap { $0["title"].string } == ["Red hat"])
        let ordered = try await host.request("POST", "/api/query/Product", json: #"{"$search": "red", "$order": {"price": "desc"}, "$limit": 2}"#, token: Self.admin)
        #expect(ordered.json.items.compactMap { $0["title"].string } == ["Red running shoes", "Green scarf"], "\(ordered.body)")
        // FTS5 syntax errors are the caller's: 400. Postgres's web-search syntax has none.
        let bad = try await host.request("POST", "/api/query/Product", json: #"{"$search": "red AND ("}"#, token: Self.admin)
        if Self.isPostgres(store) {
            #expect(bad.status == 200, "\(bad.body)")
        } else {
            #expect(bad.status == 400 && bad.json.errorCode == "INVALID_QUERY", "\(bad.body)")
        }
        let plain = try await host.request("POST", "/api/query/Plain", json: #"{"$search": "x"}"#, token: Self.admin)
        #expect(plain.status == 400 && plain.json.errorCode == "SEARCH_NOT_CONFIGURED", "\(plain.body)")
    }

    @Test("Errors: unknown entity 404, not searchable 400, bad facet/sort/key/page 400 INVALID_QUERY, GET 405", arguments: TestStore.all)
    func errors(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        let unknown = try await Self.search(host, "{}", entity: "Nope")
        #expect(unknown.status == 404 && unknown.json.errorCode == "ENTITY_NOT_FOUND", "\(unknown.body)")
        let plain = try await Self.search(host, #"{"query": "x"}"#, entity: "Plain")
        #expect(plain.status == 400 && plain.json.errorCode == "SEARCH_NOT_CONFIGURED", "\(plain.body)")
        for body in [#"{"facets": ["title"]}"#, #"{"sort": ["title", "asc"]}"#, #"{"sort": ["price", "up"]}"#,
                     #"{"page": -1}"#, #"{"page_size": 0}"#, #"{"query": 5}"#, #"{"filters": {"$limit": 1}}"#,
                     #"{"filters": {"nope": 1}}"#, #"{"colour": "red"}"#, "[]"] {
            let r = try await Self.search(host, body)
            #expect(r.status == 400, "\(body): \(r.body)")
            #expect(["INVALID_QUERY", "INVALID_COLUMN"].contains(r.json.errorCode ?? ""), "\(body): \(r.body)")
        }
        let get = try await host.request("GET", "/api/search/Product", token: Self.admin)
        #expect(get.status == 405, "\(get.body)")
        let malformed = try await host.request("POST", "/api/search/Product", json: "{oops", token: Self.admin)
        #expect(malformed.status == 400, "\(malformed.body)")
    }

    @Test("Policies: a read rule SQL can evaluate limits hits, total and facets to readable rows; one it cannot gets 403 SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY; a row-independent one searches", arguments: TestStore.all)
    func policies(_ store: TestStore) async throws {
        let rowDependent = Self.manifest(policies: #"[{"name": "own", "entity": "Product", "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId != null"}]"#)
        let (host, _) = try await Self.seeded(store, rowDependent, dev: false)
        let user = try await host.mintSession("u1")
        let none = try await Self.search(host, #"{"query": "red", "facets": ["brand"]}"#, token: user)
        #expect(none.status == 200 && none.json["total"].int == 0 && none.json["hits"].items.isEmpty, "u1 owns nothing yet: \(none.body)")
        _ = try await host.create("Product", #"{"title": "Red mine", "brand": "m", "price": 1, "inStock": true, "ownerId": "u1"}"#, token: user)
        let r = try await Self.search(host, #"{"query": "red", "facets": ["brand"]}"#, token: user)
        #expect(r.status == 200 && r.json["total"].int == 1 && Self.titles(r.json) == ["Red mine"], "\(r.body)")
        #expect(r.json["facetCounts"]["brand"]["m"].int == 1 && r.json["facetCounts"]["brand"]["acme"] == nil,
                "facets count only readable rows: \(r.body)")
        // Anonymous: `auth.userId == data.ownerId` is `null == null` for the unowned rows,
        // exactly as the per-row evaluator decides it.
        let anon = try await Self.search(host, #"{"query": "red"}"#, token: nil)
        #expect(anon.status == 200 && anon.json["total"].int == 3 && !Self.titles(anon.json).contains("Red mine"), "\(anon.body)")
        // The admin is never limited by policies.
        let admin = try await Self.search(host, #"{"query": "red"}"#)
        #expect(admin.status == 200 && admin.json["total"].int == 4, "\(admin.body)")
        let mine = try await host.request("POST", "/api/query/Product", json: #"{"$search": "red"}"#, token: user)
        #expect(mine.json.items.compactMap { $0["title"].string } == ["Red mine"], "\(mine.body)")

        // A rule SQL cannot evaluate exactly (one field compared with another) is refused:
        // the counts would include rows the caller cannot read.
        let fieldToField = Self.manifest(policies: #"[{"name": "odd", "entity": "Product", "allowRead": "auth.userId == data.ownerId || data.title == data.brand"}]"#)
        let (odd, _) = try await Self.seeded(store, fieldToField, dev: false)
        let refused = try await Self.search(odd, #"{"query": "red"}"#, token: try await odd.mintSession("u1"))
        #expect(refused.status == 403 && refused.json.errorCode == "SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY", "\(refused.body)")
        let rows = try await odd.request("POST", "/api/query/Product", json: #"{"$search": "red"}"#, token: try await odd.mintSession("u2"))
        #expect(rows.status == 200 && rows.json.items.isEmpty, "$search through /api/query filters row by row: \(rows.body)")

        let signedIn = Self.manifest(policies: #"[{"name": "members", "entity": "Product", "allowRead": "auth.userId != null"}]"#)
        let (open, _) = try await Self.seeded(store, signedIn, dev: false)
        let member = try await open.mintSession("u2")
        let ok = try await Self.search(open, #"{"query": "red"}"#, token: member)
        #expect(ok.status == 200 && ok.json["total"].int == 3, "\(ok.body)")
        let stranger = try await Self.search(open, #"{"query": "red"}"#, token: nil)
        #expect(stranger.status == 403 && stranger.json.errorCode == "SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY", "\(stranger.body)")
    }

    @Test("Ranking reads the row alone: rows the caller may not read never move its own hits (FTS5's bm25 counted them, which spelled hidden text out through prefix queries)", arguments: TestStore.all)
    func rankingIgnoresHiddenRows(_ store: TestStore) async throws {
        let own = Self.manifest(policies: #"[{"name": "own", "entity": "Product", "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId != null"}]"#)
        let host = try await HostProcess.start(manifest: own, dev: false, store: store)
        let victim = try await host.mintSession("victim"), prober = try await host.mintSession("prober")
        func mine(_ body: String, owner: String, token: String) async throws -> String {
            try await host.create("Product", #"{"title": "probe", "body": "\#(body)", "brand": "b", "price": 1, "inStock": true, "ownerId": "\#(owner)"}"#, token: token)
        }
        let twice = try await mine("zebra zebra", owner: "prober", token: prober)
        let once = try await mine("ctlword", owner: "prober", token: prober)
        func order() async throws -> (query: [String], search: [String]) {
            let q = try await host.request("POST", "/api/query/Product", json: #"{"$search": "zebra OR ctlword"}"#, token: prober)
            #expect(q.status == 200, "\(q.body)")
            let s = try await Self.search(host, #"{"query": "probe"}"#, token: prober)
            #expect(s.status == 200 && s.json["total"].int == 2, "\(s.body)")
            return (q.json.items.compactMap { $0["id"].string }, s.json["hits"].items.compactMap { $0["id"].string })
        }
        let before = try await order()
        #expect(before.query == [twice, once], "two occurrences rank above one")
        // The victim's rows, which the prober may not read, are full of the prober's word.
        for _ in 0..<20 { _ = try await mine("zebra zebra zebra probe", owner: "victim", token: victim) }
        let after = try await order()
        #expect(after.query == before.query, "hidden rows holding \"zebra\" moved the prober's hits: \(before.query) → \(after.query)")
        #expect(after.search == before.search, "hidden rows moved /api/search's hits: \(before.search) → \(after.search)")
    }

    @Test("$search is at most 32 words and 1,024 bytes (400 SEARCH_TOO_LONG): FTS5's cost grows faster than the query", arguments: [TestStore.sqlite])
    func searchLength(_ store: TestStore) async throws {
        let (host, _) = try await Self.seeded(store)
        let user = try await host.mintSession("u1")
        let words32 = (0..<32).map { "w\($0)" }.joined(separator: " OR ")
        let ok = try await host.request("POST", "/api/query/Product", json: #"{"$search": "\#(words32)"}"#, token: user)
        #expect(ok.status == 200, "32 words: \(ok.body)")
        for (what, text) in [("33 words", words32 + " OR w32"), ("1,025 bytes", String(repeating: "a", count: 1025))] {
            let r = try await host.request("POST", "/api/query/Product", json: #"{"$search": "\#(text)"}"#, token: user)
            #expect(r.status == 400 && r.json.errorCode == "SEARCH_TOO_LONG", "\(what): \(r.body)")
        }
    }

    @Test("Schema changes: search added to a table with rows is backfilled, changed text fields rebuild, removed and re-added works", arguments: TestStore.all)
    func migrations(_ store: TestStore) async throws {
        let (host, ids) = try await Self.seeded(store, Self.manifest(search: nil))
        let before = try await Self.search(host, #"{"query": "red"}"#)
        #expect(before.status == 400 && before.json.errorCode == "SEARCH_NOT_CONFIGURED")

        func restart(with search: String?) async throws {
            await host.stopAndWait()
            try host.writeManifest(Self.manifest(search: search))
            try await host.restart()
        }
        try await restart(with: #"{"text": ["title"], "facets": ["brand"]}"#)
        let added = try await Self.search(host, #"{"query": "red", "facets": ["brand"]}"#)
        #expect(Set(Self.titles(added.json)) == ["Red hat", "Red running shoes"], "\(added.body)\n\(host.log)")
        // New rows after the backfill get fresh document ids.
        _ = try await host.create("Product", #"{"title": "Red kite", "brand": "sky", "price": 9, "inStock": true}"#)
        #expect(try await Self.search(host, #"{"query": "red"}"#).json["total"].int == 3)

        // Adding body to the text fields rebuilds the index: the scarf matches through its body.
        try await restart(with: #"{"text": ["title", "body"]}"#)
        let rebuilt = try await Self.search(host, #"{"query": "red"}"#)
        #expect(Set(Self.titles(rebuilt.json)) == ["Red hat", "Red running shoes", "Red kite", "Green scarf"], "\(rebuilt.body)")

        // Facets and sortable change without touching the index.
        try await restart(with: #"{"text": ["title", "body"], "sortable": ["price"]}"#)
        let sorted = try await Self.search(host, #"{"query": "red", "sort": ["price", "asc"]}"#)
        #expect(Self.titles(sorted.json) == ["Red kite", "Red hat", "Green scarf", "Red running shoes"], "\(sorted.body)")

        try await restart(with: nil)
        #expect(try await Self.search(host, #"{"query": "red"}"#).json.errorCode == "SEARCH_NOT_CONFIGURED")
        // Writes while search is off...
        _ = try await host.request("DELETE", "/api/entities/Product/\(ids[0])", token: Self.admin)
        _ = try await host.create("Product", #"{"title": "Red umbrella", "brand": "rain", "price": 15, "inStock": true}"#)
        // ...are all seen when it comes back (the index is rebuilt from the rows).
        try await restart(with: #"{"text": ["title"]}"#)
        let back = try await Self.search(host, #"{"query": "red"}"#)
        #expect(Set(Self.titles(back.json)) == ["Red hat", "Red kite", "Red umbrella"], "\(back.body)")
        #expect(host.log.contains("built search index on Product"))
    }

    @Test("The index survives VACUUM (document ids are stored, not rowids)", arguments: TestStore.all)
    func survivesVacuum(_ store: TestStore) async throws {
        let (host, ids) = try await Self.seeded(store)
        // FTS5 only: the SQLite file is VACUUMed behind the host's back.
        guard let file = host.storeFile, !Self.isPostgres(store) else { return }
        // Deleting early rows leaves rowid gaps that VACUUM may close.
        for id in ids.prefix(2) { _ = try await host.request("DELETE", "/api/entities/Product/\(id)", token: Self.admin) }
        await host.stopAndWait()
        let vacuum = try await TestCommand.run("/usr/bin/sqlite3", [file, "VACUUM;"])
        #expect(vacuum.status == 0, "\(vacuum.stderr)")
        try await host.restart()
        _ = try await host.create("Product", #"{"title": "Red mitten", "brand": "knit", "price": 8, "inStock": true}"#)
        _ = try await host.request("PATCH", "/api/entities/Product/\(ids[2])", json: #"{"title": "Crimson hat"}"#, token: Self.admin)
        let red = try await Self.search(host, #"{"query": "red"}"#)
        #expect(Set(Self.titles(red.json)) == ["Green scarf", "Red mitten"], "\(red.body)")
        let crimson = try await Self.search(host, #"{"query": "crimson"}"#)
        #expect(Self.titles(crimson.json) == ["Crimson hat"], "\(crimson.body)")
        let integrity = try await TestCommand.run("/usr/bin/sqlite3", [file, "INSERT INTO _pylon_fts_Product(_pylon_fts_Product) VALUES('integrity-check');"])
        #expect(integrity.status == 0 && integrity.stderr.isEmpty, "\(integrity.stderr)")
    }
}
