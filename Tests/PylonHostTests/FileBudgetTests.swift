import Foundation
import Testing
@testable import PylonCore

/// The HTTP listeners' share of the open-file budget (`FileBudget.connectionCap`): the
/// cache's and the shard WebSocket's shares come out of it only when the host runs them.
@Suite("Open-file budget: the HTTP listeners' connection cap")
struct FileBudgetTests {
    static let neither = FileBudget.OtherListeners(cache: false, shardSocket: false)
    static let cacheOnly = FileBudget.OtherListeners(cache: true, shardSocket: false)
    static let socketOnly = FileBudget.OtherListeners(cache: false, shardSocket: true)
    static let both = FileBudget.OtherListeners(cache: true, shardSocket: true)

    @Test("Each share is taken only for a listener the host runs; the cap is split between the HTTP listeners, at least 16, never above what was asked")
    func arithmetic() {
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.neither, files: 1000) == 1000)
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.cacheOnly, files: 1000) == 900)
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.socketOnly, files: 1000) == 900)
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.both, files: 1000) == 800)
        #expect(FileBudget.connectionCap(nil, listeners: 3, others: Self.neither, files: 900) == 300)
        #expect(FileBudget.connectionCap(nil, listeners: 3, others: Self.both, files: 900) == 240)
        // The shard socket's share stops at its default; the cache's grows with the budget.
        #expect(FileBudget.shardSocketCap(files: 1_000_000) == FileBudget.shardSocketDefault)
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.both, files: 1_000_000) == 1_000_000 - 100_000 - 10_000)
        // What was asked for, when it fits; a tiny budget still leaves 16; an unknown one, 1024.
        #expect(FileBudget.connectionCap(50, listeners: 1, others: Self.both, files: 1000) == 50)
        #expect(FileBudget.connectionCap(5000, listeners: 1, others: Self.neither, files: 1000) == 1000)
        #expect(FileBudget.connectionCap(nil, listeners: 3, others: Self.both, files: 20) == 16)
        #expect(FileBudget.connectionCap(nil, listeners: 0, others: Self.neither, files: 100) == 100)
        #expect(FileBudget.connectionCap(nil, listeners: 1, others: Self.both, files: nil) == 1024)
        #expect(FileBudget.connectionCap(7, listeners: 1, others: Self.neither, files: nil) == 7)
    }

    @Test("Through the host, at 1128 open files (1000 after the reserve): without the cache and the shard WebSocket HTTP gets all 1000; with the cache, 900")
    func host() async throws {
        let launcher = ["/usr/bin/prlimit", "--nofile=1128:1128", "--"]
        func manifest(_ plugins: String) -> String {
            #"{"manifest_version": 1, "name": "budget", "version": "1", "entities": [], "routes": [], "policies": [], "plugins": {\#(plugins)}}"#
        }
        let bare = manifest(#""cache": {"use": "none"}, "shard.transport": {"use": "none"}"#)
        let alone = try await HostProcess.start(manifest: bare, launcher: launcher)
        defer { alone.stop() }
        #expect(alone.log.contains("HTTP: at most 1000 open connections per listener"), "\(alone.log)")
        let cached = try await HostProcess.start(manifest: manifest(#""shard.transport": {"use": "none"}"#), launcher: launcher)
        defer { cached.stop() }
        #expect(cached.log.contains("capability pylon.cache/1: pylon.cache.resp"), "\(cached.log)")
        #expect(cached.log.contains("HTTP: at most 900 open connections per listener"), "\(cached.log)")
    }
}
