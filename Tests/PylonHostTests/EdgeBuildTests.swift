import Foundation
import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// The minimal edge build (`make edge`, scripts/edge-build.sh): a folder with the stripped
/// host and exactly one store plugin. Started from that folder, the data plane works and every
/// absent capability answers 501 CAPABILITY_UNAVAILABLE naming itself. The test assembles the
/// folder from the release build (`--prebuilt`: it never runs `swift build` itself).
@Suite("Minimal edge build: host + one store plugin")
struct EdgeBuildTests {
    static let manifest = """
    {"manifest_version": 1, "name": "edge", "version": "0.1.0",
     "entities": [{"name": "Todo", "fields": [
        {"name": "title", "type": "string", "optional": false, "unique": false},
        {"name": "done", "type": "bool", "optional": false, "unique": false}], "indexes": []}]}
    """

    /// Every capability the edge build leaves to a stub, a route it owns, and its id.
    static let stubbed: [(route: String, method: String, capability: String)] = [
        ("/api/fn/hello", "POST", "pylon.functions/1"),
        ("/api/cache/some-key", "GET", "pylon.cache/1"),
        ("/api/auth/magic/send", "POST", "pylon.auth.code/1"),
        ("/api/auth/oauth/github", "GET", "pylon.auth.oauth/1"),
        ("/api/shards", "GET", "pylon.shard.sim/1"),
    ]

    @Test("The edge folder holds the host and one store; CRUD, query and pull work; absent capabilities answer 501",
          arguments: [TestStore.executorC, TestStore.d1])
    func edgeBuild(store: TestStore) async throws {
        let root = try TestPaths.freshTempDir("pylon-edge")
        defer { TestPaths.removeTempDir(root) }
        let edge = root.appendingPathComponent("edge")
        let script = TestPaths.packageRoot.appendingPathComponent("scripts/edge-build.sh").path
        let built = try await TestCommand.run("/usr/bin/env", ["bash", script, store.name, edge.path, "--prebuilt"], timeout: 300)
        #expect(built.status == 0, "edge-build.sh failed:\n\(built.stdout)\n\(built.stderr)")

        let fm = FileManager.default
        #expect(Set(try fm.contentsOfDirectory(atPath: edge.path)) == ["pylon-host", "plugins"], "nothing else in the folder")
        let plugins = try fm.contentsOfDirectory(atPath: edge.appendingPathComponent("plugins").path)
        #expect(plugins == [store.name == "d1" ? "libPylonStoreD1.so" : "libpylon_executor_c.so"], "exactly one plugin: \(plugins)")

        let backend = try await store.provision(root, root.appendingPathComponent("edge.db").path)
        let manifestPath = root.appendingPathComponent("pylon.manifest.json").path
        try Data(try backend.manifest(Self.manifest).utf8).write(to: URL(fileURLWithPath: manifestPath))
        let host = ServedHost(directory: root, pluginsDir: edge.appendingPathComponent("plugins").path,
                              manifestPath: manifestPath, dbPath: root.appendingPathComponent("edge.db").path,
                              hostBinary: edge.appendingPathComponent("pylon-host").path, environment: backend.env)
        defer { host.kill9() }
        try await host.launch()

        let created = try await host.request("POST", "/api/entities/Todo", body: #"{"title":"at the edge","done":false}"#)
        #expect(created.status == 201, "\(created.text)\n\(host.log)")
        let json: Any? = try? TestJSON.parse(created.text)
        let id = try #require(json["id"].string)
        let patched = try await host.request("PATCH", "/api/entities/Todo/\(id)", body: #"{"done":true}"#)
        #expect(patched.status == 200, "\(patched.text)")
        let query = try await host.request("POST", "/api/query/Todo", body: #"{"done":true}"#)
        #expect(query.status == 200 && query.text.contains(id), "\(query.text)")
        let pull = try await host.request("GET", "/api/sync/pull?since=0")
        let events: Any? = try? TestJSON.parse(pull.text)
        #expect(events["changes"].items.map { $0["kind"].string } == ["insert", "update"], "\(pull.text)")

        for stub in Self.stubbed {
            let r = try await host.request(stub.method, stub.route, body: stub.method == "POST" ? "{}" : nil)
            let body: Any? = try? TestJSON.parse(r.text)
            #expect(r.status == 501, "\(stub.route): \(r.status) \(r.text)")
            #expect(body.errorCode == "CAPABILITY_UNAVAILABLE", "\(stub.route): \(r.text)")
            #expect(body["error"]["message"].string?.contains(stub.capability) == true, "\(stub.route) names \(stub.capability): \(r.text)")
        }
        let log = host.log
        for cap in ["pylon.functions/1", "pylon.cache/1", "pylon.auth.code/1", "pylon.auth.oauth/1", "pylon.shard.transport/1", "pylon.shard.sim/1"] {
            #expect(log.contains("capability \(cap): stub"), "the startup log reports \(cap) as a stub:\n\(log)")
        }
        withExtendedLifetime(backend) {}
    }
}
