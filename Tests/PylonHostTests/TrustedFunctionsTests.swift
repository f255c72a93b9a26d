import Foundation
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// Functions are the app's trusted server code, as in Pylon and Convex (issue 22 item 2):
/// an app written in Pylon's style (Tests/Fixtures/pylon-style: bids are writable only
/// through mutations that check `ctx.auth` themselves, an owner settles other users' bids,
/// and index names repeat across entities) runs unchanged. A function that wants the
/// caller's policies says `policies: "enforce"`; an app that wants them on every function
/// sets `plugins.functions.policies: "enforce"` (`FunctionsTests` runs in that mode).
@Suite("Functions bypass policies by default, as in Pylon (black-box, real pylon-host, SQLite and Postgres)")
struct TrustedFunctionsTests {
    static var fixture: URL { TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/pylon-style") }

    /// The fixture's manifest and functions, as the host reads them from an app folder.
    static func app() throws -> (manifest: String, files: [String: String]) {
        let manifest = try String(contentsOf: fixture.appendingPathComponent("manifest.json"), encoding: .utf8)
        let dir = fixture.appendingPathComponent("functions")
        var files: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".ts") {
            files["functions/" + name] = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
        }
        return (manifest, files)
    }

    @Test("A Pylon-style app: clients cannot write bids, its mutations can (checking ctx.auth themselves), an owner settles and clears other users' bids; policies: enforce opts back in", arguments: [TestStore.sqlite, TestStore.postgres])
    func pylonStyleApp(store: TestStore) async throws {
        let (manifest, files) = try Self.app()
        let host = try await HostProcess.start(manifest: manifest, env: ["PYLON_FN_WORKERS": "1"], dev: false, store: store, files: files)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let carol = try await host.mintSession("carol")

        let created = try await host.request("POST", "/api/entities/Auction", json: #"{"title":"lamp","ownerId":"alice","status":"open"}"#, token: alice)
        #expect(created.status == 201, "\(created.body)")
        let auction = try #require(created.json["id"].string)

        // A client cannot write a bid directly ...
        let direct = try await host.request("POST", "/api/entities/Bid", json: #"{"auctionId":"\#(auction)","userId":"bob","amount":5,"status":"leading"}"#, token: bob)
        #expect(direct.status == 403 && direct.json.errorCode == "POLICY_DENIED", "\(direct.body)")
        // ... but the mutation can, for the caller it checked.
        let bid = try await host.request("POST", "/api/fn/placeBid", json: #"{"auctionId":"\#(auction)","amount":5}"#, token: bob)
        #expect(bid.status == 200, "\(bid.body)")
        let higher = try await host.request("POST", "/api/fn/placeBid", json: #"{"auctionId":"\#(auction)","amount":9}"#, token: carol)
        #expect(higher.status == 200, "\(higher.body)")
        let low = try await host.request("POST", "/api/fn/placeBid", json: #"{"auctionId":"\#(auction)","amount":7}"#, token: bob)
        #expect(low.json.errorCode == "BID_TOO_LOW", "the function's own rules still hold: \(low.body)")
        let anonymous = try await host.request("POST", "/api/fn/placeBid", json: #"{"auctionId":"\#(auction)","amount":50}"#)
        #expect(anonymous.json.errorCode == "UNAUTHENTICATED", "\(anonymous.body)")
        let own = try await host.request("POST", "/api/fn/placeBid", json: #"{"auctionId":"\#(auction)","amount":50}"#, token: alice)
        #expect(own.json.errorCode == "OWN_AUCTION", "\(own.body)")

        // Only the owner settles; settling updates bob's and carol's rows.
        let notOwner = try await host.request("POST", "/api/fn/closeAuction", json: #"{"auctionId":"\#(auction)"}"#, token: bob)
        #expect(notOwner.json.errorCode == "FORBIDDEN", "\(notOwner.body)")
        let closed = try await host.request("POST", "/api/fn/closeAuction", json: #"{"auctionId":"\#(auction)"}"#, token: alice)
        #expect(closed.status == 200 && closed.json["bids"].int == 2 && closed.json["best"].int == 9, "\(closed.body)")
        let bids = try await host.request("GET", "/api/entities/Bid", token: alice).json["data"].items
        let outcome = Dictionary(uniqueKeysWithValues: bids.compactMap { b in b["userId"].string.map { ($0, b["status"].string ?? "") } })
        #expect(outcome == ["bob": "lost", "carol": "won"], "\(bids)")

        // Opting in to policies: the Bid policy refuses the insert.
        let strict = try await host.request("POST", "/api/fn/strictBid", json: #"{"auctionId":"\#(auction)"}"#, token: bob)
        #expect(strict.status == 403 && strict.json.errorCode == "POLICY_DENIED", "\(strict.body)")

        // Deleting other users' rows.
        let cleared = try await host.request("POST", "/api/fn/clearBids", json: #"{"auctionId":"\#(auction)"}"#, token: alice)
        #expect(cleared.status == 200 && cleared.json.int == 2, "\(cleared.body)")
        #expect(try await host.request("GET", "/api/entities/Bid", token: alice).json["count"].int == 0)

        // `privileged` is still accepted, and the listing says how each function runs.
        #expect(try await host.request("POST", "/api/fn/legacyPrivileged", json: "{}", token: bob).status == 200)
        let listing = try await host.request("GET", "/api/fn", token: HostProcess.adminToken).json.items
        let modes = Dictionary(uniqueKeysWithValues: listing.compactMap { f in f["name"].string.map { ($0, f["policies"].string ?? "?") } })
        #expect(modes == ["placeBid": "trusted", "closeAuction": "trusted", "clearBids": "trusted", "strictBid": "enforced",
                          "legacyPrivileged": "trusted"], "\(modes)")
    }

    @Test("plugins.functions.policies takes only enforce or trusted (pylon-host check refuses anything else)")
    func settingIsChecked() async throws {
        let (manifest, _) = try Self.app()
        let bad = manifest.replacingOccurrences(of: #""routes": []"#, with: #""routes": [], "plugins": {"functions": {"policies": "strict"}}"#)
        let problems = ManifestValidator.validate(try Manifest.decode(Array(bad.utf8)))
        #expect(problems.map(\.code) == ["FUNCTIONS_POLICIES_INVALID"], "\(problems)")
        for value in ["enforce", "trusted"] {
            let good = manifest.replacingOccurrences(of: #""routes": []"#, with: #""routes": [], "plugins": {"functions": {"policies": "\#(value)"}}"#)
            let m = try Manifest.decode(Array(good.utf8))
            #expect(ManifestValidator.validate(m).isEmpty)
            #expect(m.functionsEnforcePolicies == (value == "enforce"))
        }
    }
}
