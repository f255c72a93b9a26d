import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonData
import PylonServices

#if canImport(Glibc)
import Glibc
#endif

/// `pylon-host backup --to FILE` and `pylon-host restore --from FILE`. The store plugin owns
/// its storage, so it makes and restores the backup itself (the store's `backup` / `restore`:
/// SQLite through its online backup API, Postgres through pg_dump / pg_restore, D1 not at
/// all); the host finds the store exactly as `serve` does and, on restore, hands the store
/// the SQL that gives the restored database a new change-log epoch, applied before the
/// restored data becomes visible. Clients holding a cursor from before the restore then get
/// 410 RESYNC_REQUIRED and resync instead of trusting a cursor into a different history.
///
/// The uploaded files' bytes go with it: `FILE.files` beside `FILE` (`FilesBackup`,
/// `FilesRestore`), copied through the files plugin after the database snapshot and put
/// back before the database is restored.
public enum StoreBackup {
    /// Writes a backup of the app's database to `file`, and its files' bytes to
    /// `file.files`; returns a line for the operator.
    public static func backup(_ config: HostConfig, to file: String, logger: Logger) throws(HostError) -> String {
        let target = URL(fileURLWithPath: file).standardizedFileURL.path
        return try withStore(config, logger) { selection, location, access throws(HostError) in
            guard let backup = selection.table.pointee.backup, selection.table.pointee.restore != nil else {
                throw unsupported(selection)
            }
            let archive = FilesArchive.path(for: target)
            // A stale archive of an earlier backup at this path would not pair with this one.
            unlink(archive)
            let err = PluginErrorCapture()
            let status = err.withSink { backup(selection.served.instance, target, $0) }
            guard status == PYLON_OK else { throw failure(status, err, fallback: "BACKUP_FAILED", "backup of \(location)") }
            let size = (try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0
            let line = "backup of \(location) written to \(target) (\(size) bytes)"
            let files: FilesService
            switch access {
            case .none: return line + "; no files plugin serves this app, so it holds no file bytes"
            case let .unusable(why): return line + "; file bytes NOT included: \(why.message); back the files up with their storage's own tools"
            case let .usable(service): files = service
            }
            do throws(HostError) {
                let conn = try Host.open(selection.table, selection.served.instance, PYLON_STORE_OPEN_READ, selection.served.plugin, Metrics())
                defer { conn.close() }
                return line + (try FilesBackup.write(conn, selection.dialect, files, database: target)).line(archive)
            } catch {
                // Half a backup is no backup: the database file goes too.
                unlink(target)
                throw error
            }
        }
    }

    /// Replaces the app's database with the backup in `file`, under a new change-log epoch,
    /// after putting back the files' bytes from `file.files` (when there is one); returns a
    /// line for the operator. The store refuses while it can tell a host serves the
    /// database; on any failure the database and the stored files are left unchanged.
    public static func restore(_ config: HostConfig, from file: String, logger: Logger) throws(HostError) -> String {
        let source = URL(fileURLWithPath: file).standardizedFileURL.path
        return try withStore(config, logger) { selection, location, access throws(HostError) in
            guard selection.table.pointee.backup != nil, let restore = selection.table.pointee.restore else {
                throw unsupported(selection)
            }
            let archive = FilesArchive.path(for: source)
            var bytes: FilesRestore?
            if FileManager.default.fileExists(atPath: source), FileManager.default.fileExists(atPath: archive) {
                guard case let .usable(files) = access else {
                    let why = if case let .unusable(e) = access { " (\(e.message))" } else { "" }
                    throw HostError(status: 501, code: "FILES_RESTORE_UNSUPPORTED",
                                    message: "\(archive) holds file bytes, but no working files plugin serves this app\(why); add one (libPylonFilesLocal.so) to the plugins folder; nothing was restored")
                }
                let r = FilesRestore(files: files, archive: archive)
                do throws(HostError) { try r.run(database: source) } catch {
                    r.undo()
                    throw error
                }
                bytes = r
            }
            let epoch = SchemaApplier.freshEpoch()
            let statements = [SchemaApplier.renewEpochSQL(epoch)] + (bytes?.sql(selection.dialect) ?? [])
            let sql = Array(statements.joined(separator: ";\n").utf8)
            let err = PluginErrorCapture()
            let status = sql.withUnsafeBufferPointer { buf in
                buf.withMemoryRebound(to: CChar.self) { c in
                    err.withSink { restore(selection.served.instance, source, c.baseAddress, c.count, $0) }
                }
            }
            guard status == PYLON_OK else {
                bytes?.undo()
                throw failure(status, err, fallback: "RESTORE_FAILED", "restore of \(source) into \(location)")
            }
            let filesLine = bytes.map { "; \($0.kept.count) file(s) in place (\($0.created.count) put back, \($0.bytes) bytes)" }
                ?? "; no \(archive) beside it, so no file bytes were restored"
            return "restored \(location) from \(source)\(filesLine); new change-log epoch \(epoch): clients resync on their next connection"
        }
    }

    /// The files plugin as backup and restore find it.
    enum FilesAccess {
        case none
        /// It serves, but cannot be used (e.g. a required slot left NULL): why.
        case unusable(HostError)
        case usable(FilesService)
    }

    /// Runs `body` with the store (and the files plugin, when one serves) activated alone,
    /// and shuts them down afterwards.
    private static func withStore(_ config: HostConfig, _ logger: Logger,
                                  _ body: (StoreSelection, String, FilesAccess) throws(HostError) -> String) throws(HostError) -> String {
        let (selection, registry, location) = try StoreSelection.activateAlone(config, logger: logger)
        defer { registry.shutdown() }
        var access = FilesAccess.none
        if let served = registry.served[PYLON_CAP_FILES] {
            do throws(HostError) { access = .usable(try FilesService(served)) } catch { access = .unusable(error) }
        }
        return try body(selection, location, access)
    }

    /// A store plugin that leaves the optional slots NULL.
    private static func unsupported(_ selection: StoreSelection) -> HostError {
        let p = selection.served.plugin
        return HostError(status: 501, code: "STORE_BACKUP_UNSUPPORTED",
                         message: "this store plugin does not support backup: \(p.id) \(p.version) (\(p.fileName), ABI \(p.abiMajor).\(p.abiMinor)) has no backup/restore slots; update the plugin, or back the database up with the database's own tools")
    }

    /// The store's failure as a HostError: its own stable code when it gave one.
    private static func failure(_ status: pylon_status, _ err: PluginErrorCapture, fallback: String, _ what: String) -> HostError {
        let code = err.reported?.code ?? ""
        let message = err.reported?.message ?? ""
        let stable = !code.isEmpty && code.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" }
        let httpStatus: Int
        switch status {
        case PYLON_ERR_NOT_FOUND: httpStatus = 404
        case PYLON_ERR_BUSY: httpStatus = 409
        case PYLON_ERR_UNSUPPORTED: httpStatus = 501
        case PYLON_ERR_CORRUPT, PYLON_ERR_INVALID_ARGUMENT: httpStatus = 400
        default: httpStatus = 500
        }
        return HostError(status: httpStatus, code: stable ? code : fallback,
                         message: message.isEmpty ? "\(what) failed with status \(status)" : message)
    }
}
