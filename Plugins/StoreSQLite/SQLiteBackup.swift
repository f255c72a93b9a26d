import CSQLite
import Foundation
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// Backups of the SQLite store (the store's `backup` / `restore` slots), through SQLite's online
/// backup API (sqlite3_backup_init/step/finish): a backup reads one snapshot of the live
/// database while serving hosts keep writing it (WAL readers never block the writer), and
/// a restore copies the backup into a temporary file beside the live one, checks it, runs
/// the host's SQL on it and only then renames it over the live file. The live database is
/// never written in place, so a failure at any step leaves it as it was.
enum SQLiteBackup {
    /// The first 16 bytes of every SQLite database file.
    static let magic = Array("SQLite format 3\0".utf8)

    /// Copies the live database at `live` into `target` (a single, self-contained file in
    /// rollback-journal mode), written beside `target` first and renamed when complete.
    static func backup(live: String, to target: String) -> StoreFailure? {
        guard FileManager.default.fileExists(atPath: live) else {
            return StoreFailure(PYLON_ERR_NOT_FOUND, "DATABASE_NOT_FOUND", "there is no SQLite database at \(live) to back up; check --db / plugins.store.path")
        }
        if sameFile(live, target) {
            return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "BACKUP_TARGET_IS_DATABASE", "\(target) is the live database itself; write the backup to another file")
        }
        let partial = BackupFiles.partialPath(for: target)
        defer { removeDatabaseFiles(partial) }
        let copied = withDatabase(live, readOnly: true) { source in
            withDatabase(partial, readOnly: false) { dest in copy(from: source, to: dest) ?? singleFile(dest) }
        }
        if let copied { return StoreFailure(copied.status, "BACKUP_FAILED", "backup of \(live) failed: \(copied.message)") }
        return BackupFiles.moveIntoPlace(partial, target, what: "backup")
    }

    /// Replaces the database at `live` with the backup at `source`, with `afterSQL` applied
    /// to the restored copy before it replaces the live file.
    static func restore(live: String, from source: String, afterSQL: String) -> StoreFailure? {
        if let bad = checkBackupFile(source) { return bad }
        if sameFile(live, source) {
            return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "BACKUP_IS_DATABASE", "\(source) is the live database itself, not a backup of it")
        }
        if let user = processUsing(live) { return inUse(live, pid: user) }
        let temp = BackupFiles.partialPath(for: live)
        defer { removeDatabaseFiles(temp) }
        let prepared = withDatabase(source, readOnly: true) { src in
            withDatabase(temp, readOnly: false) { dest in
                copy(from: src, to: dest) ?? check(dest, source) ?? apply(afterSQL, dest) ?? singleFile(dest)
            }
        }
        if let prepared {
            let status = prepared.status == PYLON_ERR_CORRUPT || prepared.status == PYLON_ERR_NOT_FOUND ? PYLON_ERR_CORRUPT : prepared.status
            return StoreFailure(status, status == PYLON_ERR_CORRUPT ? "BACKUP_INVALID" : "RESTORE_FAILED",
                                "\(source) was not restored (the database at \(live) is unchanged): \(prepared.message)")
        }
        if FileManager.default.fileExists(atPath: live) {
            // Everything committed goes into the main file and the WAL is emptied, so removing
            // the WAL and its index before the rename loses nothing, and a stale WAL can never
            // be replayed onto the restored file.
            if let failed = withDatabase(live, readOnly: false, checkpoint) {
                return StoreFailure(failed.status, failed.status == PYLON_ERR_BUSY ? "DATABASE_IN_USE" : "RESTORE_FAILED",
                                    "cannot empty the write-ahead log of \(live) before replacing it (the database is unchanged): \(failed.message)")
            }
            if let user = processUsing(live) { return inUse(live, pid: user) }
            unlink(live + "-wal")
            unlink(live + "-shm")
        }
        return BackupFiles.moveIntoPlace(temp, live, what: "restored database")
    }

    private static func inUse(_ live: String, pid: pid_t) -> StoreFailure {
        StoreFailure(PYLON_ERR_BUSY, "DATABASE_IN_USE",
                     "process \(pid) has the database \(live) open (a serving pylon-host?); stop it, then run restore again (the database is unchanged)")
    }

    /// A missing, empty or foreign file is refused before anything is opened.
    private static func checkBackupFile(_ path: String) -> StoreFailure? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            return StoreFailure(PYLON_ERR_NOT_FOUND, "BACKUP_NOT_FOUND", "cannot read the backup file \(path); check the path passed to --from")
        }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 16)) ?? Data())
        if head == magic { return nil }
        let kind = head.starts(with: Array("PGDMP".utf8))
            ? "a PostgreSQL backup (pg_dump custom format); restore it with the Postgres store"
            : head.isEmpty ? "empty" : "not an SQLite database file"
        return StoreFailure(PYLON_ERR_CORRUPT, "BACKUP_INVALID", "\(path) is \(kind); the database is unchanged")
    }

    /// The whole source database into `dest`, in one read snapshot of the source.
    private static func copy(from source: OpaquePointer, to dest: OpaquePointer) -> SQLiteFailure? {
        guard let backup = sqlite3_backup_init(dest, "main", source, "main") else {
            return SQLiteFailure(rc: sqlite3_extended_errcode(dest), message: String(cString: sqlite3_errmsg(dest)))
        }
        var rc: Int32
        var waits = 0
        repeat {
            rc = sqlite3_backup_step(backup, -1)
            // Busy only while another process recovers the WAL: wait, for a bounded time.
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
                waits += 1
                sqlite3_sleep(50)
            }
        } while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && waits < 600
        sqlite3_backup_finish(backup)
        guard rc != SQLITE_DONE else { return nil }
        let damaged = rc & 0xFF == SQLITE_CORRUPT || rc & 0xFF == SQLITE_NOTADB
        return SQLiteFailure(rc: rc, message: (damaged ? "the file is damaged or truncated: " : "") + String(cString: sqlite3_errstr(rc)))
    }

    /// A restored copy must pass SQLite's full integrity check before it may go live.
    private static func check(_ db: OpaquePointer, _ source: String) -> SQLiteFailure? {
        var result = ""
        let failure = run(db, "PRAGMA integrity_check(5)") { stmt in
            let line = sqlite3_column_text(stmt, 0).map { String(cString: $0) } ?? ""
            result += result.isEmpty ? line : "; " + line
        }
        if let failure { return SQLiteFailure(rc: SQLITE_CORRUPT, message: "the backup is damaged: \(failure.message)") }
        return result == "ok" ? nil : SQLiteFailure(rc: SQLITE_CORRUPT, message: "the backup is damaged (integrity check: \(result))")
    }

    /// The host's SQL, in one transaction on the restored copy.
    private static func apply(_ sql: String, _ db: OpaquePointer) -> SQLiteFailure? {
        guard !sql.isEmpty else { return nil }
        guard let failure = exec(db, "BEGIN IMMEDIATE;\n\(sql);\nCOMMIT") else { return nil }
        return SQLiteFailure(rc: SQLITE_CORRUPT, message: "it is not a backup of a Pylon database (\(failure.message))")
    }

    /// Leaves `db` as one file (rollback journal), whatever mode the source was in.
    private static func singleFile(_ db: OpaquePointer) -> SQLiteFailure? {
        exec(db, "PRAGMA journal_mode=DELETE")
    }

    /// Moves committed WAL content into the main file and truncates the WAL; busy when
    /// another process holds the database.
    private static func checkpoint(_ db: OpaquePointer) -> SQLiteFailure? {
        let rc = sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        return rc == SQLITE_OK ? nil : SQLiteFailure(rc: rc, message: String(cString: sqlite3_errmsg(db)))
    }

    /// Opens `path`, runs `body` and closes it again.
    private static func withDatabase(_ path: String, readOnly: Bool, _ body: (OpaquePointer) -> SQLiteFailure?) -> SQLiteFailure? {
        var handle: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        if !readOnly { createPrivately(path) }
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        defer { if let handle { sqlite3_close_v2(handle) } }
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            return SQLiteFailure(rc: rc, message: "cannot open \(path): \(message)")
        }
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, 5000)
        return body(handle)
    }

    private static func exec(_ db: OpaquePointer, _ sql: String) -> SQLiteFailure? {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &errmsg)
        defer { sqlite3_free(errmsg) }
        guard rc != SQLITE_OK else { return nil }
        let failure = SQLiteFailure(rc: sqlite3_extended_errcode(db), message: errmsg.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc)))
        if sqlite3_get_autocommit(db) == 0 { _ = sqlite3_exec(db, "ROLLBACK", nil, nil, nil) }
        return failure
    }

    private static func run(_ db: OpaquePointer, _ sql: String, _ row: (OpaquePointer) -> Void) -> SQLiteFailure? {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            return SQLiteFailure(rc: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)))
        }
        defer { sqlite3_finalize(stmt) }
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW {
            row(stmt)
            rc = sqlite3_step(stmt)
        }
        return rc == SQLITE_DONE ? nil : SQLiteFailure(rc: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)))
    }

    /// The process (other than this one) that has the WAL database at `path` open, if any.
    /// Every connection to a WAL database holds a shared lock on the "dead man switch"
    /// byte of its `-shm` file (offset 128, SQLite's unix VFS) for as long as it is open;
    /// asking for the conflicting lock names the holder without taking anything.
    static func processUsing(_ path: String) -> pid_t? {
        let fd = open(path + "-shm", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 128
        lock.l_len = 1
        guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return lock.l_pid
    }

    private static func removeDatabaseFiles(_ path: String) {
        for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
    }

    /// Whether `a` and `b` name the same existing file (hard links and symlinks included).
    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat()
        var sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}

// MARK: - The backup and restore slots

/// `backup`: the instance's database into `path`.
func sqliteBackup(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    backupCall(instance, path, err, as: SQLiteInstance.self) { SQLiteBackup.backup(live: $0.config.path, to: $1) }
}

/// `restore`: the backup at `path` replaces the instance's database.
func sqliteRestore(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
                   _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    restoreCall(instance, path, sql, sqlLen, err, as: SQLiteInstance.self) { SQLiteBackup.restore(live: $0.config.path, from: $1, afterSQL: $2) }
}
