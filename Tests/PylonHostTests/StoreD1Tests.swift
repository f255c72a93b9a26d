import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// StoreD1 beyond the shared data-plane suite: what happens when D1 (the local
/// D1-compatible fixture server) fails in each way a remote HTTP database can, and what the
/// host says about a bad D1 config. The data plane itself runs on D1 in DataPlaneTests.
@Suite("StoreD1: faults, exactly-once commits, config errors")
struct StoreD1Tests {
    static let manifest = DataPlaneTests.manifest

    static func start(env: [String: String] = [:]) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, store: .d1)
    }

    /// Tells the fixture server to misbehave (see Tests/Fixtures/d1/d1_server.py).
    static func control(_ host: HostProcess, _ path: String, _ body: String = "{}") async throws -> String {
        let base = try #require(host.storeFixtureURL)
        var req = URLRequest(url: URL(string: base + path)!)
        req.httpMethod = path == "/__stats" ? "GET" : "POST"
        if req.httpMethod == "POST" { req.httpBody = Data(body.utf8) }
        let (data, _) = try await URLSession.shared.data(for: req)
        return String(decoding: data, as: UTF8.self)
    }

    static func count(_ host: HostProcess) async throws -> Int? {
        try await host.request("GET", "/api/entities/Todo").json["count"].int
    }

    @Test("A COMMIT applied by D1 whose answer is lost is confirmed by its marker: answered once, stored once")
    func lostAnswerAfterApply() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        // Twice: libcurl re-sends a request whose reused connection died, so the second
        // send is dropped too (and must fail on the batch's commit marker, not apply again).
        _ = try await Self.control(host, "/__fault", #"{"mode":"drop_after_apply","times":2,"on":"batch","match":"Todo"}"#)
        let r = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"once","done":false}"#)
        #expect(r.status == 201, "the batch was applied, so the insert succeeded: \(r.body)\n\(host.log)")
        #expect(try await Self.count(host) == 1, "stored exactly once")
        let log = try await host.drain(since: 0)
        #expect(log.events.count == 1, "one change-log entry: \(log.events)")
    }

    @Test("A COMMIT lost before D1 applied it is reported as not applied, and a retry stores it once")
    func lostBeforeApply() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        // Twice: libcurl's own re-send of the dropped request is dropped as well.
        _ = try await Self.control(host, "/__fault", #"{"mode":"drop_before_apply","times":2,"on":"batch","match":"Todo"}"#)
        let r = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"retry me","done":false}"#)
        #expect(r.status == 500, "\(r.body)")
        #expect(r.json.errorCode == "STORE_ERROR")
        #expect(r.json["error"]["message"].string?.contains("not applied") == true, "says it was not applied: \(r.body)")
        #expect(try await Self.count(host) == 0)
        let again = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"retry me","done":false}"#)
        #expect(again.status == 201, "\(again.body)")
        #expect(try await Self.count(host) == 1)
        #expect(try await host.drain(since: 0).events.map { $0["seq"].int } == [1], "no seq was used by the failed attempt")
    }

    @Test("HTTP 500, a body that is not JSON and a D1 error body each become a clear store error; the host keeps serving")
    func httpAndBodyErrors() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let cases: [(mode: String, says: String)] = [
            ("http_500", "HTTP 500"), ("garbage", "not JSON"), ("d1_error", "injected failure"),
        ]
        for c in cases {
            // Only the route's own read: the host also polls the store in the background
            // (the session change log), which must not take the injected fault.
            _ = try await Self.control(host, "/__fault", #"{"mode":"\#(c.mode)","times":1,"match":"Todo"}"#)
            let r = try await host.request("GET", "/api/entities/Todo")
            #expect(r.status >= 500, "\(c.mode): \(r.body)")
            #expect(r.json.errorCode == "STORE_ERROR", "\(c.mode): \(r.body)")
            #expect(r.json["error"]["message"].string?.contains(c.says) == true, "\(c.mode): \(r.body)")
        }
        // Only the insert's batch: the host's own background writes (the session watcher trims
        // its log every minute) must not take the fault on a slow run.
        _ = try await Self.control(host, "/__fault", #"{"mode":"http_500","times":1,"on":"batch","match":"Todo"}"#)
        let write = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"x","done":false}"#)
        #expect(write.status == 500, "\(write.body)")
        #expect(write.json["error"]["message"].string?.contains("nothing was applied") == true, "\(write.body)")
        #expect(try await host.insert("Todo", #"{"title":"after","done":true}"#).isEmpty == false)
        #expect(try await Self.count(host) == 1)
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("D1 unreachable: requests fail with D1_UNREACHABLE, the host keeps answering")
    func unreachable() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        _ = try await host.insert("Todo", #"{"title":"before","done":false}"#)
        _ = try await Self.control(host, "/__exit")
        let r = try await host.request("GET", "/api/entities/Todo")
        #expect(r.status == 500, "\(r.body)")
        #expect(r.json["error"]["message"].string?.contains("D1") == true, "\(r.body)")
        let w = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"x","done":false}"#)
        #expect(w.status == 500, "\(w.body)")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("A wrong API token stops the host at startup with a message naming D1 and the fix")
    func wrongToken() async throws {
        do {
            let host = try await Self.start(env: [D1FixtureServer.tokenVariable: "wrong-token"])
            host.stop()
            Issue.record("the host started with a wrong D1 token")
        } catch {
            let text = "\(error)"
            #expect(text.contains("D1 refused the API token"), "\(text)")
            #expect(text.contains("api_token_env"), "says what to check: \(text)")
        }
    }

    @Test("A missing token variable and an unknown config key are refused at startup")
    func configErrors() async throws {
        do {
            let host = try await Self.start(env: [D1FixtureServer.tokenVariable: ""])
            host.stop()
            Issue.record("the host started without a D1 token")
        } catch {
            #expect("\(error)".contains("api_token_env names \(D1FixtureServer.tokenVariable)"), "\(error)")
        }
        // A typo in a key fails before any network traffic.
        let config: [(String, JSONValue)] = [
            ("use", .string("d1")), ("account_id", .string("a")), ("databse_id", .string("typo")),
            ("api_token", .string("t")), ("base_url", .string("http://127.0.0.1:9/client/v4")),
        ]
        let text = try TestStoreBackend(storeConfig: config, sqliteFile: nil).manifest(Self.manifest)
        let dir = try TestPaths.freshTempDir("pylon-d1-config")
        defer { TestPaths.removeTempDir(dir) }
        let manifestPath = dir.appendingPathComponent("pylon.manifest.json").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifestPath))
        let served = ServedHost(directory: dir, manifestPath: manifestPath, dbPath: dir.appendingPathComponent("x.db").path)
        let r = try await served.launchExpectingExit()
        #expect(r.exited, "\(r.log)")
        #expect(r.log.contains("unknown key \"databse_id\""), "\(r.log)")
    }

    @Test("HTTPS: with the server's CA in ca_file the data plane works; without it the host refuses to start")
    func https() async throws {
        let dir = try TestPaths.freshTempDir("pylon-d1-tls")
        defer { TestPaths.removeTempDir(dir) }
        let server = try await D1FixtureServer.start(in: dir, tls: true)
        let manifestPath = dir.appendingPathComponent("pylon.manifest.json").path
        try Data(try server.backend.manifest(Self.manifest).utf8).write(to: URL(fileURLWithPath: manifestPath))
        let host = ServedHost(directory: dir, manifestPath: manifestPath, dbPath: dir.appendingPathComponent("x.db").path,
                              environment: server.backend.env)
        defer { host.kill9() }
        try await host.launch()
        let created = try await host.request("POST", "/api/entities/Todo", body: #"{"title":"over tls","done":false}"#)
        #expect(created.status == 201, "\(created.text)\n\(host.log)")
        let list = try await host.request("GET", "/api/entities/Todo")
        #expect(list.text.contains("over tls"), "\(list.text)")
        await host.stop()

        // The same server without trusting its certificate: verification is never skipped.
        let untrusted = server.backend.storeConfig.filter { $0.0 != "ca_file" }
        let text = try TestStoreBackend(storeConfig: untrusted, sqliteFile: nil).manifest(Self.manifest)
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifestPath))
        let refused = try await host.launchExpectingExit()
        #expect(refused.exited, "\(refused.log)")
        #expect(refused.log.lowercased().contains("certificate"), "names the certificate problem:\n\(refused.log)")
    }
}
