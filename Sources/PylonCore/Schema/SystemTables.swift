/// A table of the host's own (`_pylon_*`), declared once: columns with dialect-free types,
/// the primary key and the indexes. Each dialect writes the DDL from it
/// (`SQLDialect.createSystemTable`), so SQLite and PostgreSQL get the same tables and a
/// change is made in one place. Databases made by earlier hosts open unchanged: the names
/// and types are theirs, and every statement is `IF NOT EXISTS` (`SystemTablesTests`
/// creates a database with the older DDL text and compares).
package struct SystemTable: Sendable {
    /// A column's type, whatever the dialect.
    enum ColumnType: Sendable {
        case text
        /// A 64-bit integer.
        case integer
        /// A 64-bit key the database numbers itself and never hands out twice, not even
        /// after the newest rows are deleted. Only as the whole primary key.
        case serial
    }

    struct Column: Sendable {
        let name: String
        let type: ColumnType
        /// May hold NULL. Primary-key columns never do.
        let optional: Bool

        static func text(_ name: String, optional: Bool = false) -> Column { Column(name: name, type: .text, optional: optional) }
        static func integer(_ name: String, optional: Bool = false) -> Column { Column(name: name, type: .integer, optional: optional) }
        static func serial(_ name: String) -> Column { Column(name: name, type: .serial, optional: false) }
    }

    /// An index; `unique` ones still admit any number of NULLs (both dialects). With a
    /// `predicate` (SQL both dialects read alike) it is partial: it holds only the rows that
    /// match, so a row written in any other state costs it nothing, and a query uses it when
    /// its WHERE implies the predicate (the same `status = '…'` term, or `c = ?` for
    /// `c IS NOT NULL`).
    struct Index: Sendable {
        let name: String
        let columns: [String]
        var unique = false
        var predicate: String? = nil
    }

    package let name: String
    let columns: [Column]
    let primaryKey: [String]
    let indexes: [Index]

    init(_ name: String, _ columns: [Column], primaryKey: [String], indexes: [Index] = []) {
        assert(primaryKey.allSatisfy { key in columns.contains { $0.name == key && !$0.optional } }, "\(name): a key column is missing or optional")
        assert(columns.allSatisfy { $0.type != .serial || primaryKey == [$0.name] }, "\(name): a serial column must be the whole key")
        self.name = name
        self.columns = columns
        self.primaryKey = primaryKey
        self.indexes = indexes
    }
}

/// Every `_pylon_*` table the host creates.
package enum SystemTables {
    /// Key/value facts about the database: the applied schema (`SchemaApplier`), the epoch.
    static let meta = SystemTable("_pylon_meta", [.text("key"), .text("value")], primaryKey: ["key"])

    /// The change log (`ChangeLog`). `seq` is a plain integer key: on SQLite it is the rowid,
    /// which takes max(seq)+1 inside the writer's transaction, so it is gapless (a rolled-back
    /// write gives its number back) and ordered by commit; on PostgreSQL the host numbers
    /// entries from MAX(seq) read under the write lock (see `PostgresDialect`). Retention
    /// never deletes the newest entry, so numbers are never reused.
    static let changes = SystemTable(
        "_pylon_changes",
        [.integer("seq"), .text("entity"), .text("row_id"), .text("kind"), .text("data", optional: true),
         .text("before", optional: true), .integer("ts")],
        primaryKey: ["seq"])

    /// Sessions by the hash of their token (`SessionStore`).
    package static let sessions = SystemTable(
        "_pylon_sessions",
        [.text("token_hash"), .text("user_id"), .integer("expires_at"), .integer("created_at"), .text("device", optional: true),
         .text("tenant_id", optional: true)],
        primaryKey: ["token_hash"],
        indexes: [SystemTable.Index(name: "_pylon_sessions_user", columns: ["user_id"])])

    /// The session change log (`SessionWatcher`): each dialect's triggers append the old token
    /// hash on every UPDATE or DELETE of a session row, by any host, code path or hand.
    /// `serial`: trimming the log never lets a number be handed out twice.
    static let sessionChanges = SystemTable(
        "_pylon_session_changes", [.serial("seq"), .text("token_hash"), .integer("ts")], primaryKey: ["seq"])

    /// Push records (`SyncPush`); op and pending ids are the caller's own, per scope (`PushScope`).
    /// `created_at` (unix seconds) is indexed for the retention sweep (`PushOpsRetention`),
    /// which deletes the oldest in small batches; an older database gets the index at its
    /// next start (the DDL is `IF NOT EXISTS`).
    static let pushOps = SystemTable(
        "_pylon_push_ops",
        [.text("scope"), .text("op_id"), .text("client_id", optional: true), .text("row_id", optional: true),
         .text("pending_id", optional: true), .integer("created_at")],
        primaryKey: ["scope", "op_id"],
        indexes: [SystemTable.Index(name: "_pylon_push_ops_scope_pending", columns: ["scope", "pending_id"]),
                  SystemTable.Index(name: "_pylon_push_ops_created", columns: ["created_at"])])

    /// Scheduled function calls (`FunctionScheduler`), created only when functions are served.
    package static let schedules = SystemTable(
        "_pylon_schedules",
        [.text("id"), .text("fn_name"), .text("args"), .integer("run_at"), .integer("attempts")],
        primaryKey: ["id"])

    /// Password hashes (`PasswordAccounts`), one per user of the manifest's user entity: kept
    /// out of the user's row so no read of that entity, change event or export carries one.
    /// `hash` is an Argon2id PHC string.
    package static let passwords = SystemTable(
        "_pylon_passwords", [.text("user_id"), .text("hash"), .integer("updated_at")], primaryKey: ["user_id"])

    /// API keys (`ApiKeys`): the secret is kept only as an HMAC under the host's pepper.
    package static let apiKeys = SystemTable(
        "_pylon_api_keys",
        [.text("id"), .text("user_id"), .text("name"), .text("prefix"), .text("secret_hash"), .text("scopes", optional: true),
         .integer("expires_at", optional: true), .integer("last_used_at", optional: true), .integer("created_at")],
        primaryKey: ["id"],
        indexes: [SystemTable.Index(name: "_pylon_api_keys_user", columns: ["user_id"])])

    /// OAuth sign-ins in flight (`OAuthAccounts`): the state token (as its SHA-256), which
    /// provider, where to send the browser, the PKCE verifier (encrypted), the nonce and the
    /// browser binding (a SHA-256 of the cookie set when the flow began). Single use, ten
    /// minutes.
    package static let oauthState = SystemTable(
        "_pylon_oauth_state",
        [.text("state_hash"), .text("provider"), .text("callback_url"), .text("error_callback_url"), .text("verifier"),
         .text("nonce"), .text("browser_hash"), .text("redirect_uri"), .integer("expires_at")],
        primaryKey: ["state_hash"])

    /// Account links (`OAuthAccounts`, better-auth's `account`): a provider's subject for a
    /// user, with the provider's tokens encrypted (AES-GCM under PYLON_AUTH_ENCRYPTION_KEY).
    package static let accounts = SystemTable(
        "_pylon_accounts",
        [.text("id"), .text("user_id"), .text("provider_id"), .text("account_id"), .text("access_token", optional: true),
         .text("refresh_token", optional: true), .integer("access_token_expires_at", optional: true), .text("scope", optional: true),
         .text("email", optional: true), .integer("created_at"), .integer("updated_at")],
        primaryKey: ["id"],
        indexes: [SystemTable.Index(name: "_pylon_accounts_subject", columns: ["provider_id", "account_id"], unique: true),
                  SystemTable.Index(name: "_pylon_accounts_user", columns: ["user_id"])])

    /// Durable jobs (`JobStore`): one row per job, from enqueue to its end (completed,
    /// dead or cancelled). `status` is pending, running, completed, dead or cancelled; a
    /// pending job with `retry_count` > 0 waits for its back-off (shown as `retrying`).
    /// `run_at`: when a pending job may start (ms); `lease_until`: when a running job's
    /// claim lapses; `claim`: counts claims, so only the current holder may finish it.
    /// `attempts`: JSON list of failed attempts (bounded by the retry cap).
    package static let jobs = SystemTable(
        "_pylon_jobs",
        [.text("id"), .text("name"), .text("payload"), .integer("priority"), .text("queue"), .text("status"),
         .integer("max_retries"), .integer("retry_count"), .integer("run_at"), .integer("lease_until", optional: true),
         .integer("claim"), .text("idempotency_key", optional: true), .text("error", optional: true),
         .text("attempts"), .text("origin"), .integer("created_at"), .integer("started_at", optional: true),
         .integer("completed_at", optional: true), .integer("delay_ms")],
        primaryKey: ["id"],
        // Partial, so each of a job's three row versions (pending, running, ended) enters only
        // the primary key and one index: on PostgreSQL every change of `status` is a new
        // row version, entered in every index that holds it. Running jobs are those with a
        // lease: a predicate on `status` would draw every statement that names the running
        // status (to check a job is still its claim's) to that index, whose entries for jobs
        // that ran stay until VACUUM, instead of the primary key.
        indexes: [SystemTable.Index(name: "_pylon_jobs_due", columns: ["priority", "run_at", "id"], predicate: "status = 'pending'"),
                  SystemTable.Index(name: "_pylon_jobs_leases", columns: ["lease_until"], predicate: "lease_until IS NOT NULL"),
                  SystemTable.Index(name: "_pylon_jobs_ended", columns: ["completed_at"], predicate: "completed_at IS NOT NULL"),
                  SystemTable.Index(name: "_pylon_jobs_idempotency", columns: ["idempotency_key"], unique: true,
                                    predicate: "idempotency_key IS NOT NULL")])

    /// How many jobs of each queue are running, across hosts (`JobStore`): changed in the
    /// same transaction as every job that starts or stops running, and rebuilt from
    /// `_pylon_jobs` when a host starts and every minute. A claim reads these few rows
    /// rather than the running jobs: on PostgreSQL the index entries of every job that ran
    /// stay until VACUUM, so a read of `status = 'running'` grew with the jobs run since
    /// (2 ms after 10,000, about 80 µs of PostgreSQL's time per job).
    package static let jobQueues = SystemTable(
        "_pylon_job_queues", [.text("queue"), .integer("running")], primaryKey: ["queue"])

    /// Cron tasks' state (`CronService`): the newest occurrence fired (ms; claimed in the
    /// write transaction that enqueues its job, so each occurrence fires once across hosts
    /// and restarts), when tracking began (`since`: first seen or last enabled; no
    /// occurrence before it fires) and whether the task is enabled (an operator's switch).
    package static let cron = SystemTable(
        "_pylon_cron",
        [.text("name"), .integer("last_fired", optional: true), .integer("since"), .integer("enabled")],
        primaryKey: ["name"])

    /// Cron tasks registered by functions (`CronTaskStore`, `ctx.cron.register`): the
    /// definition (`payload` is the job's JSON payload, NULL for Pylon's default); their
    /// state (last fired, enabled) is a `_pylon_cron` row like a manifest task's.
    package static let cronTasks = SystemTable(
        "_pylon_cron_tasks",
        [.text("name"), .text("schedule"), .text("function"), .text("timezone"), .text("payload", optional: true),
         .integer("created_at")],
        primaryKey: ["name"])

    /// Durable workflows (`WorkflowStore`): one row per instance. `steps` is the JSON list
    /// of recorded steps (completed and failed attempts, in order); `transitions` counts the
    /// instance's state changes, and each advance job names the count it was made for, so a
    /// stale or repeated job changes nothing. `inbox`: JSON list of events sent before the
    /// workflow waited for them.
    package static let workflows = SystemTable(
        "_pylon_workflows",
        [.text("id"), .text("name"), .text("input"), .text("status"), .text("steps"), .integer("current_step"),
         .integer("transitions"), .integer("wake_at", optional: true), .text("waiting_for", optional: true), .text("inbox"),
         .text("output", optional: true), .text("error", optional: true), .integer("max_retries"), .integer("created_at"),
         .integer("started_at", optional: true), .integer("completed_at", optional: true), .integer("updated_at")],
        primaryKey: ["id"],
        // `_pylon_workflows_ended`: the retention's trim reads finished instances by end time
        // (only they have one), as `_pylon_jobs_ended` does for jobs.
        indexes: [SystemTable.Index(name: "_pylon_workflows_status", columns: ["status", "created_at"]),
                  SystemTable.Index(name: "_pylon_workflows_ended", columns: ["completed_at"], predicate: "completed_at IS NOT NULL")])

    /// Uploaded files (`FileRecords`), created only when a plugin serves `pylon.files/1`: one
    /// row per file, written with a change-log entry (entity `_pylon_files`). `storage_key`
    /// is the files plugin's own key for the bytes (never shown); `owner` is the uploader's
    /// user id (NULL: uploaded with the admin token); `created_at` in ms.
    package static let files = SystemTable(
        "_pylon_files",
        [.text("id"), .text("storage_key"), .text("owner", optional: true), .text("name"), .text("type"),
         .integer("size"), .text("sha256"), .integer("created_at")],
        primaryKey: ["id"],
        indexes: [SystemTable.Index(name: "_pylon_files_owner", columns: ["owner"]),
                  SystemTable.Index(name: "_pylon_files_key", columns: ["storage_key"])])

    /// One-time codes and links of `pylon.auth.code/1` (`AuthCodes`), created when a plugin
    /// serves it: per purpose and subject (the email for a code typed at sign-in, the user
    /// for email verification, the link's lookup key for a link) the plugin's opaque
    /// `state` (a salted hash, never the secret), the address it went to, and its expiry.
    package static let authCodes = SystemTable(
        "_pylon_auth_codes",
        [.text("purpose"), .text("subject"), .text("email"), .text("user_id", optional: true), .text("state"),
         .integer("expires_at"), .integer("created_at")],
        primaryKey: ["purpose", "subject"],
        indexes: [SystemTable.Index(name: "_pylon_auth_codes_expiry", columns: ["expires_at"]),
                  SystemTable.Index(name: "_pylon_auth_codes_email", columns: ["purpose", "email"])])

    /// Organisations (`Organisations`): one row each, written with a change-log entry
    /// (entity `_pylon_orgs`); `created_by` is the user who made it, `created_at` unix seconds.
    package static let orgs = SystemTable(
        "_pylon_orgs", [.text("id"), .text("name"), .text("created_by"), .integer("created_at")],
        primaryKey: ["id"],
        indexes: [SystemTable.Index(name: "_pylon_orgs_creator", columns: ["created_by"])])

    /// Who belongs to which organisation, with which role (owner, admin or member); each
    /// change has a change-log entry (entity `_pylon_org_members`, row id `<org>/<user>`).
    package static let orgMembers = SystemTable(
        "_pylon_org_members", [.text("org_id"), .text("user_id"), .text("role"), .integer("joined_at")],
        primaryKey: ["org_id", "user_id"],
        indexes: [SystemTable.Index(name: "_pylon_org_members_user", columns: ["user_id"])])

    /// Pending invitations to an organisation: the invite token only as its SHA-256 (it is
    /// 32 CSPRNG bytes, so a hash cannot be reversed by guessing), the address it was sent to
    /// (normalized), the role it grants, who sent it and until when it works. Deleted when
    /// accepted or revoked: a token works once. No change-log entry (nothing to sync).
    package static let orgInvites = SystemTable(
        "_pylon_org_invites",
        [.text("id"), .text("org_id"), .text("email"), .text("role"), .text("invited_by"), .text("token_hash"),
         .text("token_prefix"), .integer("created_at"), .integer("expires_at")],
        primaryKey: ["id"],
        indexes: [SystemTable.Index(name: "_pylon_org_invites_token", columns: ["token_hash"], unique: true),
                  SystemTable.Index(name: "_pylon_org_invites_org", columns: ["org_id", "email"])])

    /// Saved shards (`ShardPersistence`), created when a plugin serves `pylon.shard.sim/1`:
    /// one row per shard that persists (`persist_every_ticks` > 0), rewritten every that
    /// many ticks with the sim's `save` bytes (`state`, base64), the tick they were saved at,
    /// the sim's create `config` and the shard's settings (JSON); `updated_at` unix ms.
    /// Deleted when the shard stops for good (finished, idle, deleted, broken); kept when
    /// the host stops, which restores it at its next start.
    package static let shardState = SystemTable(
        "_pylon_shard_state",
        [.text("id"), .text("sim"), .text("config"), .text("settings"), .integer("tick"), .text("state"), .integer("updated_at")],
        primaryKey: ["id"])

    /// The tables every database gets (`SQLDialect.bootstrap`), in order.
    static let bootstrap = [meta, changes, sessions, sessionChanges, pushOps, passwords, apiKeys, oauthState, accounts,
                            orgs, orgMembers, orgInvites]
}

extension SQLDialect {
    /// `table`'s DDL in this dialect: the table, then its indexes, each `IF NOT EXISTS`.
    package func createSystemTable(_ table: SystemTable) -> [String] {
        let inlineKey = table.primaryKey.count == 1 ? table.primaryKey[0] : nil
        var definitions = table.columns.map { column in
            var d = quote(column.name) + " "
            switch column.type {
            case .serial: d += serialPrimaryKey
            case .text, .integer:
                d += columnType(column.type == .text ? .text : .integer)
                if column.name == inlineKey {
                    d += " PRIMARY KEY"
                    // An integer key cannot hold NULL anyway (SQLite: it is the rowid); SQLite
                    // lets any other key column hold NULL unless told not to.
                    if column.type == .text { d += " NOT NULL" }
                } else if !column.optional {
                    d += " NOT NULL"
                }
            }
            return d
        }
        if inlineKey == nil { definitions.append("PRIMARY KEY (\(table.primaryKey.map(quote).joined(separator: ", ")))") }
        return ["CREATE TABLE IF NOT EXISTS \(quote(table.name)) (\(definitions.joined(separator: ", ")))"]
            + table.indexes.map { index in
                "CREATE \(index.unique ? "UNIQUE " : "")INDEX IF NOT EXISTS \(quote(index.name)) ON \(quote(table.name)) (\(index.columns.map(quote).joined(separator: ", ")))"
                    + (index.predicate.map { " WHERE " + $0 } ?? "")
            }
    }
}
