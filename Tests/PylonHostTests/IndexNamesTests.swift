import Foundation
import Testing

/// Index names are per entity, as in Pylon (issue 22 item 1): two entities may each have a
/// `by_user` index, each its own database index `<Entity>_<name>`; a database made when
/// index names were database-wide moves to the new names at start without losing a row.
@Suite("Index names per entity (black-box, real pylon-host, SQLite and Postgres)")
struct IndexNamesTests {
    static func manifest(cart: Bool) -> String {
        let cartItem = cart ? """
        ,{"name": "CartItem", "fields": [
            {"name": "userId", "type": "string", "optional": false, "unique": false},
            {"name": "sku", "type": "string", "optional": false, "unique": false}],
         "indexes": [{"name": "by_user", "fields": ["userId"], "unique": true}]}
        """ : ""
        return """
        {"manifest_version": 1, "name": "index-names", "version": "0.1.0",
         "entities": [
           {"name": "Address", "fields": [
              {"name": "userId", "type": "string", "optional": false, "unique": false},
              {"name": "street", "type": "string", "optional": false, "unique": false}],
            "indexes": [{"name": "by_user", "fields": ["userId"], "unique": false}]}\(cartItem)],
         "routes": [], "policies": []}
        """
    }

    /// The database's index names (the host's own `_pylon*` ones left out).
    static func indexNames(_ host: HostProcess) async throws -> [String] {
        let query = host.storeURL != nil
            ? "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname"
            : "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        return try await host.sql(query).split(whereSeparator: \.isNewline).map(String.init)
            .filter { !$0.lowercased().hasPrefix("_pylon") && !$0.hasSuffix("_pkey") }
    }

    static let stores = [TestStore.sqlite, TestStore.postgres]

    @Test("Two entities with an index of the same name: the manifest loads, each entity gets its own index, a unique one is enforced only in its entity", arguments: stores)
    func sameNameInTwoEntities(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest(cart: true), store: store)
        defer { host.stop() }
        #expect(try await Self.indexNames(host) == ["Address_by_user", "CartItem_by_user"])
        _ = try await host.create("Address", #"{"userId":"u1","street":"a"}"#)
        _ = try await host.create("Address", #"{"userId":"u1","street":"b"}"#)
        _ = try await host.create("CartItem", #"{"userId":"u1","sku":"x"}"#)
        let dup = try await host.request("POST", "/api/entities/CartItem", json: #"{"userId":"u1","sku":"y"}"#, token: HostProcess.adminToken)
        #expect(dup.status == 409 && dup.json.errorCode == "UNIQUE_VIOLATION", "\(dup.body)")
    }

    @Test("A database whose indexes have the old database-wide names moves to per-entity names at start: rows kept, old index gone, new ones built", arguments: stores)
    func legacyNamesMigrate(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest(cart: false), store: store)
        defer { host.stop() }
        for n in 0..<20 { _ = try await host.create("Address", #"{"userId":"u\#(n % 3)","street":"s\#(n)"}"#) }
        await host.stopAndWait()
        // What an older host left: the index under the manifest's own name, schema snapshot 1.
        try await host.sql("""
            DROP INDEX "Address_by_user"; CREATE INDEX "by_user" ON "Address" ("userId");
            UPDATE _pylon_meta SET value = replace(value, '"snapshot_version":2', '"snapshot_version":1') WHERE key = 'schema';
            """)
        #expect(try await Self.indexNames(host) == ["by_user"])
        try host.writeManifest(Self.manifest(cart: true))
        try await host.restart()
        #expect(host.log.contains("index names are now per entity"), "\(host.log)")
        #expect(try await Self.indexNames(host) == ["Address_by_user", "CartItem_by_user"])
        let list = try await host.request("GET", "/api/entities/Address?limit=100", token: HostProcess.adminToken)
        #expect(list.json["data"].items.count == 20, "\(list.body)")
        // Recorded as migrated: the next start changes nothing.
        try await host.restart()
        #expect(try await Self.indexNames(host) == ["Address_by_user", "CartItem_by_user"])
    }
}
