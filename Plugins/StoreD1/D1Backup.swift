import PylonPluginABI
import PylonPluginKit

/// The D1 store makes no backups (the store's `backup` / `restore` slots): the database lives in
/// Cloudflare, which has its own export and point-in-time recovery. The slots exist so that
/// `pylon-host backup` says what to use instead of only "not supported".
enum D1Backup {
    static func unsupported(_ config: D1Config, _ verb: String) -> StoreFailure {
        StoreFailure(PYLON_ERR_UNSUPPORTED, "STORE_BACKUP_UNSUPPORTED",
                     "the D1 store cannot \(verb) a database that lives in Cloudflare: use `wrangler d1 export <database-name> --remote --output FILE.sql` to back up database \(config.databaseID), `wrangler d1 execute <database-name> --remote --file FILE.sql` to restore, or D1 Time Travel (`wrangler d1 time-travel restore`) to go back to a point in time")
    }
}

/// `backup`: always PYLON_ERR_UNSUPPORTED, naming wrangler's export.
func d1Backup(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    backupCall(instance, path, err, as: D1Instance.self) { instance, _ in D1Backup.unsupported(instance.config, "back up") }
}

/// `restore`: always PYLON_ERR_UNSUPPORTED; the D1 database is not touched.
func d1Restore(_ instance: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
               _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    restoreCall(instance, path, sql, sqlLen, err, as: D1Instance.self) { instance, _, _ in D1Backup.unsupported(instance.config, "restore") }
}
