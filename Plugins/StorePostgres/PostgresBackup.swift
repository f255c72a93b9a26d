import CLibPQ
import Foundation
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// Backups of the Postgres store (the store's `backup` / `restore` slots) with PostgreSQL's own tools,
/// found on PATH: `pg_dump --format=custom` writes the backup (one consistent snapshot,
/// while hosts keep serving); a restore turns it into SQL with `pg_restore` (which reads
/// the whole archive first, so a damaged file fails before the database is touched) and
/// runs that SQL, followed by the host's, with `psql --single-transaction`: all of it
/// commits, or nothing does. The connection string reaches the tools through libpq's
/// environment variables (PGHOST, PGPASSWORD, ...), never their arguments, so a password
/// never shows in `ps`.
enum PostgresBackup {
    static func backup(_ config: PostgresConfig, to target: String) -> StoreFailure? {
        let pgDump: String
        let env: [String: String]
        let work: String
        switch (locate("pg_dump"), environment(config), workFolder()) {
        case let (.success(t), .success(e), .success(w)): (pgDump, env, work) = (t, e, w)
        case let (.failure(f), _, _), let (_, .failure(f), _), let (_, _, .failure(f)): return f
        }
        defer { try? FileManager.default.removeItem(atPath: work) }
        let partial = BackupFiles.partialPath(for: target)
        // pg_dump opens its --file with fopen("w"), which keeps an existing file's mode:
        // created owner-only first, the backup is never readable by others (it holds the
        // same hashes as the database; under the umask it was 0644).
        let created = BackupFiles.createOwnerOnly(partial)
        guard created == 0 else {
            return StoreFailure(PYLON_ERR_IO, "BACKUP_FAILED",
                                "cannot create \(partial) for the backup: \(String(cString: strerror(created))); check that the folder of --to exists and is writable")
        }
        defer { unlink(partial) }
        if let failed = run(pgDump, ["--format=custom", "--no-password", "--file=\(partial)"], env: env, work: work) {
            return StoreFailure(PYLON_ERR_IO, "BACKUP_FAILED", "pg_dump failed (\(config.redactedTarget)): \(failed)")
        }
        return BackupFiles.moveIntoPlace(partial, target, what: "backup")
    }

    static func restore(_ config: PostgresConfig, from source: String, afterSQL: String) -> StoreFailure? {
        if let bad = checkBackupFile(source) { return bad }
        let tools: (restore: String, psql: String)
        let env: [String: String]
        let work: String
        switch (locate("pg_restore"), locate("psql"), environment(config), workFolder()) {
        case let (.success(r), .success(p), .success(e), .success(w)): (tools, env, work) = ((r, p), e, w)
        case let (.failure(f), _, _, _), let (_, .failure(f), _, _), let (_, _, .failure(f), _), let (_, _, _, .failure(f)): return f
        }
        defer { try? FileManager.default.removeItem(atPath: work) }
        if let busy = servingHost(config) { return busy }
        let script = (work as NSString).appendingPathComponent("restore.sql")
        if let failed = run(tools.restore, ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--file=\(script)", source],
                            env: env, work: work) {
            return StoreFailure(PYLON_ERR_CORRUPT, "BACKUP_INVALID", "\(source) cannot be read by pg_restore (the database is unchanged): \(failed)")
        }
        // The dump's SQL changes session settings (an empty search_path among them): the
        // host's SQL runs with the database's defaults.
        guard let out = FileHandle(forWritingAtPath: script) else {
            return StoreFailure(PYLON_ERR_IO, "IO_ERROR", "cannot append to \(script)")
        }
        out.seekToEndOfFile()
        out.write(Data("\nRESET ALL;\n\(afterSQL);\n".utf8))
        try? out.close()
        if let failed = run(tools.psql, ["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", script], env: env, work: work) {
            let foreign = failed.contains("_pylon_meta") ? "it is not a backup of a Pylon database; " : ""
            return StoreFailure(PYLON_ERR_GENERIC, foreign.isEmpty ? "RESTORE_FAILED" : "BACKUP_INVALID",
                                "restoring \(source) into \(config.redactedTarget) failed and was rolled back (the database is unchanged): \(foreign)\(failed)")
        }
        return nil
    }

    /// A missing file or one that is not a pg_dump custom-format archive is refused first.
    private static func checkBackupFile(_ path: String) -> StoreFailure? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            return StoreFailure(PYLON_ERR_NOT_FOUND, "BACKUP_NOT_FOUND", "cannot read the backup file \(path); check the path passed to --from")
        }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 16)) ?? Data())
        if head.starts(with: Array("PGDMP".utf8)) { return nil }
        let kind = head.starts(with: Array("SQLite format 3".utf8))
            ? "an SQLite backup; restore it with the SQLite store"
            : head.isEmpty ? "empty" : "not a pg_dump custom-format archive (pylon-host backup writes one)"
        return StoreFailure(PYLON_ERR_CORRUPT, "BACKUP_INVALID", "\(path) is \(kind); the database is unchanged")
    }

    /// Refuses while another session of a serving host is connected to the database.
    private static func servingHost(_ config: PostgresConfig) -> StoreFailure? {
        guard let pg = config.connect(application: "pylon-host restore") else {
            return StoreFailure(PYLON_ERR_NO_MEMORY, "NO_MEMORY", "libpq could not allocate a connection")
        }
        defer { PQfinish(pg) }
        guard PQstatus(pg) == CONNECTION_OK else {
            return StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_FAILED",
                                "cannot connect to PostgreSQL (\(config.redactedTarget)): \(PostgresConnection.errorText(pg))")
        }
        let sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = '\(PostgresConfig.hostApplicationName)' AND pid <> pg_backend_pid() LIMIT 1"
        let r = PQexec(pg, sql)
        defer { PQclear(r) }
        guard PQresultStatus(r) == PGRES_TUPLES_OK, PQntuples(r) > 0, let pid = PQgetvalue(r, 0, 0) else { return nil }
        return StoreFailure(PYLON_ERR_BUSY, "DATABASE_IN_USE",
                            "a pylon-host is connected to \(config.redactedTarget) (server process \(String(cString: pid))); stop every host using this database, then run restore again (the database is unchanged)")
    }

    /// The tool's path on PATH, or a failure saying what to install.
    private static func locate(_ tool: String) -> Result<String, StoreFailure> {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return .success(candidate) }
        }
        return .failure(StoreFailure(PYLON_ERR_UNSUPPORTED, "BACKUP_TOOL_MISSING",
                                     "\(tool) is not on PATH: install PostgreSQL's client tools, of the server's major version or newer (Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq), or add their folder (e.g. /usr/lib/postgresql/15/bin) to PATH"))
    }

    /// This process's environment with the connection string's settings as libpq variables.
    private static func environment(_ config: PostgresConfig) -> Result<[String: String], StoreFailure> {
        guard let options = config.options else {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "the connection string is not valid"))
        }
        var env = ProcessInfo.processInfo.environment
        for o in options {
            guard let name = o.envvar else {
                return .failure(StoreFailure(PYLON_ERR_UNSUPPORTED, "BACKUP_OPTION_UNSUPPORTED",
                                             "the connection string sets \(o.keyword), which PostgreSQL's tools cannot take from the environment; back up with pg_dump directly"))
            }
            env[name] = o.value
        }
        if env["PGCONNECT_TIMEOUT"] == nil { env["PGCONNECT_TIMEOUT"] = "10" }
        return .success(env)
    }

    /// A private folder (mode 0700) for the tools' error output and the restore script.
    private static func workFolder() -> Result<String, StoreFailure> {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("pylon-pg-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            return .failure(StoreFailure(PYLON_ERR_IO, "IO_ERROR", "cannot create a folder in \(NSTemporaryDirectory()) (set TMPDIR to a writable folder): \(String(cString: strerror(errno)))"))
        }
        return .success(String(cString: made))
    }

    /// Runs `tool` with no input and waits; nil on success, else its exit and last error lines.
    private static func run(_ tool: String, _ arguments: [String], env: [String: String], work: String) -> String? {
        let errPath = (work as NSString).appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        guard let errFile = FileHandle(forWritingAtPath: errPath) else { return "cannot create \(errPath)" }
        defer { try? errFile.close() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.environment = env
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = errFile
        do {
            try p.run()
        } catch {
            return "cannot start \(tool): \(error)"
        }
        p.waitUntilExit()
        if p.terminationReason == .exit && p.terminationStatus == 0 { return nil }
        let text = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let tail = text.split(separator: "\n").suffix(6).joined(separator: " | ")
        return "\((tool as NSString).lastPathComponent) exited with \(p.terminationStatus): \(tail.isEmpty ? "no message" : String(tail.suffix(800)))"
    }
}

// MARK: - The backup and restore slots

/// `backup`: the instance's database into `path` with pg_dump.
func pgBackup(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    backupCall(instance, path, err, as: PostgresInstance.self) { PostgresBackup.backup($0.config, to: $1) }
}

/// `restore`: the archive at `path`, then the host's SQL, in one transaction.
func pgRestore(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
               _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    restoreCall(instance, path, sql, sqlLen, err, as: PostgresInstance.self) { PostgresBackup.restore($0.config, from: $1, afterSQL: $2) }
}
