import PylonCore

/// Whose push records (`_pylon_push_ops`) a push sees: op ids are deduplicated, and
/// `_pending_` ids resolved, only among the records of the same scope — one per user, one
/// for the admin token, and one shared by all anonymous callers (who cannot be told apart;
/// an app that lets visitors push gives them guest sessions, and each guest is a user).
enum PushScope {
    static func of(_ auth: AuthContext) -> String {
        if auth.isAdmin { return "admin" }
        if let user = auth.userID { return "user:" + user }
        return "anonymous"
    }

    /// The scope of records made before ops were scoped (they did not record who pushed
    /// them). No caller is in it: such a record no longer dedupes a retry or resolves a
    /// pending id — one retried insert from before the upgrade may be applied a second time,
    /// which is safer than letting any user match (and learn the row of) any old op id. The
    /// records are kept until the retention sweep (`PushOpsRetention`) deletes them.
    static let legacy = "legacy"
}
