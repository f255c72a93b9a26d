import PylonPluginABI
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing

/// The host's side of deferred-write stores (D1) that black-box tests cannot reach
/// deterministically. The data plane on such a store is covered by DataPlaneTests (d1).
@Suite("Deferred-write stores: host-side rules")
struct DeferredWritesTests {
    @Test("A COMMIT failing on the change log's seq key is reported as another writer, not as the user's unique violation")
    func concurrentWriterIsNamed() {
        let seq = StoreError(status: PYLON_ERR_CONSTRAINT, code: "UNIQUE_VIOLATION",
                             message: "D1: UNIQUE constraint failed: _pylon_changes.seq: SQLITE_CONSTRAINT")
        let mapped = StoreThreads.commitFailure(seq) as? HostError
        #expect(mapped?.status == 503)
        #expect(mapped?.code == "CONCURRENT_WRITER")

        let user = StoreError(status: PYLON_ERR_CONSTRAINT, code: "UNIQUE_VIOLATION",
                              message: "D1: UNIQUE constraint failed: User.email: SQLITE_CONSTRAINT")
        #expect((StoreThreads.commitFailure(user) as? StoreError)?.code == "UNIQUE_VIOLATION", "the user's own violation stays a 409")
    }

    @Test("Rows of a short or broken result read as NULL instead of trapping")
    func shortRows() {
        let row: [SQLValue] = [.int(1)]
        #expect(row.at(0) == .int(1))
        #expect(row.at(3) == .null)
        #expect(row.at(-1) == .null)
    }
}
