import Foundation
@testable import PylonClient

/// A memory store that counts clears (resyncs, user changes) and can be told to fail the
/// next commits that carry rows (a full disk).
actor CountingStore: ReplicaStore {
    private let inner = MemoryStore()
    private(set) var clears = 0
    var failNextRowCommits = 0

    func load() async throws -> StoreSnapshot { await inner.load() }

    func commit(_ change: StoreCommit) async throws {
        if !change.putRows.isEmpty, failNextRowCommits > 0 {
            failNextRowCommits -= 1
            throw TestHostError(description: "disk full")
        }
        await inner.commit(change)
    }

    func clear(ops: Bool) async throws {
        clears += 1
        await inner.clear(ops: ops)
    }

    func failRowCommits(_ n: Int) { failNextRowCommits = n }
}
