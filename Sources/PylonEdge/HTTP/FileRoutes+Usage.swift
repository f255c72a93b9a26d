import Foundation
import Hummingbird
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// Quotas and housekeeping of the file routes:
///
/// - `GET /api/files/usage` → `{"files","bytes","max_files","max_bytes"}`: the caller's
///   files and the per-user limits (null: unlimited). With the admin token: the unowned
///   files (uploaded with it), which no quota limits.
/// - `POST /api/files/sweep` (admin) → `{"listed","removed","bytes_removed"}`: deletes the
///   stored bytes that no file row names and that are older than the grace period
///   (`FileSweeper`); 501 `FILES_SWEEP_UNSUPPORTED` when the plugin cannot list its keys.
extension RouteContext {
    func addFileAdminRoutes(_ router: Router<PylonRequestContext>, _ files: FileRoutesConfig) {
        router.get("/api/files/usage") { req, _ in
            let auth = try await auth(req)
            guard auth.isAdmin || auth.userID != nil else {
                throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in to see your files' usage")
            }
            let owner = auth.isAdmin ? nil : auth.userID
            let usage = try await files.records.usage(owner: owner)
            return HTTPSupport.json(owner == nil ? FileQuota(maxBytes: 0, maxFiles: 0).json(usage) : files.quota.json(usage))
        }
        router.post("/api/files/sweep") { req, _ in
            try await requireAdmin(req, "the files sweep")
            guard let sweeper = files.sweeper else {
                throw HostError(status: 501, code: "FILES_SWEEP_UNSUPPORTED",
                                message: "\(files.service.plugin.id) cannot list its files (pylon_files_v1.list, ABI 2.7), so orphaned bytes cannot be found; update the plugin")
            }
            let r = try await sweeper.sweep()
            return HTTPSupport.json(.object([("listed", .int(Int64(r.listed))), ("removed", .int(Int64(r.removed))),
                                             ("bytes_removed", .int(r.bytesRemoved))]))
        }
    }

    /// For an owner with a quota: refuses at once an upload the owner has no room for (by
    /// file count, and, for a raw body, by its declared Content-Length), and returns the
    /// check `UploadWriter` makes as bytes arrive. Nil without a quota.
    static func quotaGuard(_ req: Request, owner: String?, raw: Bool, _ files: FileRoutesConfig) async throws -> (@Sendable (Int64) throws -> Void)? {
        guard let owner, !files.quota.unlimited else { return nil }
        let used = try await files.records.usage(owner: owner)
        let declared = raw ? req.headers[.contentLength].flatMap { Int64($0) } ?? 0 : 0
        try files.quota.check(used, adding: declared)
        let quota = files.quota
        return { received in try quota.check(used, adding: received) }
    }
}
