import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonData

/// `pylon-host backup --to FILE` and `pylon-host restore --from FILE`. The store plugin owns
/// its storage, so it makes and restores the backup itself (the store's `backup` / `restore`:
/// SQLite through its online backup API, Postgres through pg_dump / pg_restore, D1 not at
/// all); the host finds the store exactly as `serve` does and, on restore, hands the store
/// the SQL that gives the restored database a new change-log epoch, applied before the
/// restored data becomes visible. Clients holding a cursor from before the restore then get
/// 410 RESYNC_REQUIRED and resync instead of trusting a cursor into a different history.
public enum StoreBackup {
    /// Writes a backup of the app's database to `file`; returns a line for the operator.
    public static func backup(_ config: HostConfig, to file: String, logger: Logger) throws(HostError) -> String {
        let target = URL(fileURLWithPath: file).standardizedFileURL.path
        return try withStore(config, logger) { selection, location throws(HostError) in
            guard let backup = selection.table.pointee.backup, selection.table.pointee.restore != nil else {
                throw unsupported(selection)
            }
            let err = PluginErrorCapture()
            let status = err.withSink { backup(selection.served.instance, target, $0) }
            guard status == PYLON_OK else { throw failure(status, err, fallback: "BACKUP_FAILED", "backup of \(location)") }
            let size = (try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0
            return "backup of \(location) written to \(target) (\(size) bytes)"
        }
    }

    /// Replaces the app's database with the backup in `file`, under a new change-log epoch;
    /// returns a line for the operator. The store refuses while it can tell a host serves
    /// the database, and leaves it unchanged on any failure.
    public static func restore(_ config: HostConfig, from file: String, logger: Logger) throws(HostError) -> String {
        let source = URL(fileURLWithPath: file).standardizedFileURL.path
        return try withStore(config, logger) { selection, location throws(HostError) in
            guard selection.table.pointee.backup != nil, let restore = selection.table.pointee.restore else {
                throw unsupported(selection)
            }
            let epoch = SchemaApplier.freshEpoch()
            let sql = Array(SchemaApplier.renewEpochSQL(epoch).utf8)
            let err = PluginErrorCapture()
            let status = sql.withUnsafeBufferPointer { buf in
                buf.withMemoryRebound(to: CChar.self) { c in
                    err.withSink { restore(selection.served.instance, source, c.baseAddress, c.count, $0) }
                }
            }
            guard status == PYLON_OK else { throw failure(status, err, fallback: "RESTORE_FAILED", "restore of \(source) into \(location)") }
            return "restored \(location) from \(source); new change-log epoch \(epoch): clients resync on their next connection"
        }
    }

    /// Runs `body` with the store activated alone, and shuts it down afterwards.
    private static func withStore(_ config: HostConfig, _ logger: Logger,
                                  _ body: (StoreSelection, String) throws(HostError) -> String) throws(HostError) -> String {
        let (selection, registry, location) = try StoreSelection.activateAlone(config, logger: logger)
        defer { registry.shutdown() }
        return try body(selection, location)
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
