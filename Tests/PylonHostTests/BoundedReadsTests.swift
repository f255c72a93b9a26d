import Foundation
import Logging
@testable import PylonCore
@testable import PylonData
@testable import PylonPlugins
import PylonPluginABI
import Testing

/// The SQLite store's [bounded] reads (PYLON_STORE_OPEN_READ_BOUNDED), called through the
/// ABI the way the host calls them: while another process holds an exclusive lock, a read on
/// a bounded connection answers PYLON_ERR_BUSY (code "BUSY") at once, even with a busy
/// timeout of ten minutes configured for the store (the host then retries on a reader
/// thread, see ABIEvolutionTests); once the lock is gone the same connection reads.
@Suite("Bounded reads: the SQLite store never waits on a PYLON_STORE_OPEN_READ_BOUNDED connection")
struct BoundedReadsTests {
    @Test("a bounded read under another process's exclusive lock answers BUSY at once; after the lock it reads")
    func busyAtOnce() async throws {
        let dir = try TestPaths.freshTempDir("pylon-bounded")
        defer { TestPaths.removeTempDir(dir) }
        let db = dir.appendingPathComponent("app.db").path
        // A rollback-journal database: there another connection's EXCLUSIVE lock keeps
        // readers out (in WAL mode readers never wait for the writer).
        let made = try await TestCommand.run("/usr/bin/sqlite3", [db, "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (42);"])
        #expect(made.status == 0, "\(made.stderr)")

        let plugin = try PluginLoader.load(path: TestPaths.sqlitePlugin).get()
        let services = HostServices(logger: Logger(label: "test"), metrics: Metrics())
        let config = Array(#"{"path":"\#(db)","busy_timeout_ms":600000}"#.utf8)
        let errors = PluginErrorCapture()
        var instance: OpaquePointer?
        let created = config.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                errors.withSink { plugin.descriptor.pointee.create(services.table, c.baseAddress, c.count, &instance, $0) }
            }
        }
        let inst = try #require(instance, "create failed (\(created)): \(errors.reported?.message ?? "")")
        defer { plugin.descriptor.pointee.destroy(inst) }
        let raw = try #require(plugin.descriptor.pointee.get_interface(inst, PYLON_CAP_STORE))
        let table = StoreTable.normalized(raw)
        #expect(table.pointee.flags & PYLON_STORE_FLAG_LOCAL_READS != 0)
        var handle: OpaquePointer?
        let opened = errors.withSink { table.pointee.open(inst, PYLON_STORE_OPEN_READ_BOUNDED, &handle, $0) }
        let conn = StoreConnection(table: table, handle: try #require(handle, "open failed (\(opened)): \(errors.reported?.message ?? "")"))
        defer { conn.close() }

        let lock = try LockHolder(db: db, folder: dir)
        defer { lock.stop() }
        try await lock.waitUntilLocked()
        do {
            _ = try conn.execute("SELECT x FROM t")
            Issue.record("a read under an exclusive lock succeeded: the lock holder did not hold it")
        } catch {
            #expect(error.status == PYLON_ERR_BUSY && error.code == "BUSY", "\(error)")
        }
        try await lock.release()
        let rows = try conn.execute("SELECT x FROM t").rows
        #expect(rows.count == 1 && rows.first?.first == .int(42), "\(rows)")
    }
}

/// A python3 process that holds an EXCLUSIVE lock on a SQLite file until told to let go
/// (files in `folder` carry the handshake), or at the latest for two minutes.
private final class LockHolder: @unchecked Sendable {
    let process = Process()
    let locked: String
    let release: String

    init(db: String, folder: URL) throws {
        locked = folder.appendingPathComponent("locked").path
        release = folder.appendingPathComponent("release").path
        let script = """
        import os, sqlite3, sys, time
        db, locked, release = sys.argv[1:4]
        c = sqlite3.connect(db, isolation_level=None, timeout=60)
        c.execute("BEGIN EXCLUSIVE")
        open(locked, "w").close()
        # Lets go by itself after two minutes: a store that waited for the lock would then
        # read successfully, and the test fails instead of hanging.
        deadline = time.time() + 120
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.02)
        c.execute("COMMIT")
        c.close()
        """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, db, locked, release]
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Waits (generously) for the lock to be held.
    func waitUntilLocked() async throws {
        for _ in 0..<3000 where !FileManager.default.fileExists(atPath: locked) {
            guard process.isRunning else { throw TestSetupError(description: "the lock holder exited with \(process.terminationStatus)") }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard FileManager.default.fileExists(atPath: locked) else { throw TestSetupError(description: "the lock holder never took the lock") }
    }

    /// Lets go of the lock and waits (generously) for the process to end.
    func release() async throws {
        FileManager.default.createFile(atPath: release, contents: nil)
        for _ in 0..<3000 where process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        guard !process.isRunning else { throw TestSetupError(description: "the lock holder did not let go of the lock") }
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }
}
