import Atomics
import Crypto
import Foundation
import NIOConcurrencyHelpers
import PylonCore

/// Sessions in the app database (`_pylon_sessions`). Tokens are `pylon_` + 64 hex chars
/// (32 CSPRNG bytes); only their SHA-256 is stored, so a leaked database does not leak
/// usable tokens. Resolved sessions are cached in memory (by hash) for a short time so a
/// request does not cost a database read. The cache never outlives the database row: any
/// change or deletion of a session row (logout on any host, SQL by hand) reaches
/// `forget` through `SessionWatcher` within a poll, and a revocation on this host at once.
/// A session carries its user's verified address (`auth.email`), read with it; a change of
/// that address reaches `forget(userID:)` through `EmailChanges`.
public final class SessionStore: @unchecked Sendable {
    let store: StoreThreads
    let dialect: SQLDialect
    let lifetime: Int64
    /// Joins the user row into every session lookup, for `Session.email`.
    let verifiedEmail: VerifiedEmail
    /// A session's user id, expiry, organisation and verified address, by token hash.
    private let resolveSQL: String
    /// The cache of resolved sessions, in 16 stripes by the token hash's first hex digit,
    /// each with its own lock: every authenticated request reads it, and one lock would be
    /// shared by all of them.
    private let stripes = (0..<16).map { _ in CacheStripe() }
    /// Bumped by every `forget` before it drops anything: a lookup that read the database
    /// before a revocation was processed must not put its (stale) answer in the cache after it.
    private let generationCounter = ManagedAtomic<UInt64>(0)
    static let cacheLimit = 100_000
    static let cacheSeconds: Int64 = 30
    /// Told the token hashes this host revoked, after commit (set by the host: ends the
    /// streams those sessions authenticated without waiting for the watcher's next poll).
    package var onRevoked: (@Sendable ([String]) -> Void)?

    public struct Session: Sendable {
        public var userID: String
        public var expiresAt: Int64
        public var isGuest: Bool
        public var tenantID: String?
        /// The user's address while it is verified (`VerifiedEmail`), else nil.
        public var email: String?
    }

    package init(store: StoreThreads, dialect: SQLDialect, lifetime: Int64, verifiedEmail: VerifiedEmail) {
        self.store = store
        self.dialect = dialect
        self.lifetime = lifetime
        self.verifiedEmail = verifiedEmail
        resolveSQL = "SELECT s.user_id, s.expires_at, s.tenant_id, \(verifiedEmail.columns) FROM _pylon_sessions s"
            + "\(verifiedEmail.join(on: "s.user_id")) WHERE s.token_hash = \(dialect.placeholder(1))"
    }

    package static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    public static func hash(_ token: String) -> String {
        RowID.hex(bytes: SHA256.hash(data: Array(token.utf8)))
    }

    public static func newToken() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        return "pylon_" + RowID.hex(bytes: bytes)
    }

    /// Creates a session and returns its token (the only time the plaintext exists).
    public func create(userID: String, device: String? = nil) async throws -> (token: String, expiresAt: Int64) {
        let token = Self.newToken()
        let hash = Self.hash(token)
        let now = Self.now()
        let expires = lifetime == 0 ? 0 : now + lifetime
        let d = dialect
        let sql = "INSERT INTO _pylon_sessions (token_hash, user_id, expires_at, created_at, device, tenant_id) VALUES (\((1...6).map { d.placeholder($0) }.joined(separator: ", ")))"
        _ = try await store.write { tx in
            try tx.connection.execute(sql, [.text(hash), .text(userID), .int(expires), .int(now),
                                            device.map { .text($0) } ?? .null, .null], wantRows: false)
        }
        return (token, expires)
    }

    /// The live session for `token`, or nil (unknown and expired tokens are anonymous).
    public func resolve(_ token: String) async throws -> Session? {
        let hash = Self.hash(token)
        let now = Self.now()
        if let known = fromCache(hash, now) { return known }
        let before = generation
        let row = try await store.read(quick: true) { [resolveSQL] conn in try conn.execute(resolveSQL, [.text(hash)]).rows.first }
        guard let row, case let .text(user) = row.at(0), case let .int(expires) = row.at(1) else { return nil }
        if expires != 0 && now >= expires { return nil }
        var tenant: String?
        if case let .text(t) = row.at(2) { tenant = t }
        let guest = user.hasPrefix("guest_")
        let s = Session(userID: user, expiresAt: expires, isGuest: guest, tenantID: tenant,
                        email: guest ? nil : verifiedEmail.value(email: row.at(3), verified: row.at(4)))
        remember(hash, s, now, ifGeneration: before)
        return s
    }

    /// Changes with every `forget`; see `generationCounter`.
    package var generation: UInt64 { generationCounter.load(ordering: .sequentiallyConsistent) }

    /// `resolve` without waiting, when its answer is cached: `.some(session)`, `.some(nil)`
    /// (expired), or nil when the store must be asked (then `resolve`).
    public func resolveCached(_ token: String) -> Session?? {
        fromCache(Self.hash(token), Self.now())
    }

    private func fromCache(_ hash: String, _ now: Int64) -> Session?? {
        guard let hit = cached(hash), now - hit.cachedAt < Self.cacheSeconds else { return nil }
        return .some(hit.session.expiresAt != 0 && now >= hit.session.expiresAt ? nil : hit.session)
    }

    private func stripe(_ hash: String) -> CacheStripe {
        let c = hash.utf8.first ?? 0  // a lowercase hex digit
        return stripes[Int(c <= UInt8(ascii: "9") ? c &- UInt8(ascii: "0") : c &- UInt8(ascii: "a") &+ 10) & 15]
    }

    private func cached(_ hash: String) -> (session: Session, cachedAt: Int64)? {
        let st = stripe(hash)
        return st.lock.withLock { st.cache[hash] }
    }

    private func remember(_ hash: String, _ s: Session, _ now: Int64, ifGeneration read: UInt64) {
        let st = stripe(hash)
        st.lock.withLock {
            // Under the stripe's lock, which `forget` takes after bumping the generation.
            guard generation == read else { return }
            if st.cache.count > Self.cacheLimit / stripes.count { st.cache.removeAll() }
            st.cache[hash] = (s, now)
        }
    }

    /// Drops these sessions from the cache (their rows changed or are gone).
    func forget(_ hashes: some Sequence<String>) {
        generationCounter.wrappingIncrement(ordering: .sequentiallyConsistent)
        for h in hashes {
            let st = stripe(h)
            _ = st.lock.withLock { st.cache.removeValue(forKey: h) }
        }
    }

    /// Drops every cached session of `userID` (their verified address changed). Rare, so a
    /// scan of the cache rather than an index kept up on every request.
    package func forget(userID: String) {
        generationCounter.wrappingIncrement(ordering: .sequentiallyConsistent)
        for st in stripes {
            st.lock.withLock { st.cache = st.cache.filter { $0.value.session.userID != userID } }
        }
    }

    /// Drops every cached session (the watcher lost track of the change log for a while).
    func forgetAll() {
        generationCounter.wrappingIncrement(ordering: .sequentiallyConsistent)
        for st in stripes { st.lock.withLock { st.cache.removeAll() } }
    }

    /// Revokes `token`. Returns whether a session existed.
    @discardableResult
    public func revoke(_ token: String) async throws -> Bool {
        let hash = Self.hash(token)
        let find = "SELECT 1 FROM _pylon_sessions WHERE token_hash = \(dialect.placeholder(1))"
        let sql = "DELETE FROM _pylon_sessions WHERE token_hash = \(dialect.placeholder(1))"
        // Asked before deleting: a deferred-write store (D1) reports no row counts until commit.
        let existed = try await store.write { tx in
            let existed = !(try tx.connection.execute(find, [.text(hash)]).rows.isEmpty)
            try tx.connection.execute(sql, [.text(hash)], wantRows: false)
            return existed
        }
        revoked([hash])
        return existed
    }

    /// Replaces the live session of `token` by a new one with a fresh lifetime — same user,
    /// device and active organisation (Pylon dropped the organisation) — in one write;
    /// nil when `token` names no live session.
    public func refresh(_ token: String) async throws -> (token: String, userID: String, expiresAt: Int64)? {
        let old = Self.hash(token), new = Self.newToken()
        let now = Self.now()
        let expires = lifetime == 0 ? 0 : now + lifetime
        let d = dialect
        let find = "SELECT user_id, expires_at, device, tenant_id FROM _pylon_sessions WHERE token_hash = \(d.placeholder(1))"
        let delete = "DELETE FROM _pylon_sessions WHERE token_hash = \(d.placeholder(1))"
        let insert = "INSERT INTO _pylon_sessions (token_hash, user_id, expires_at, created_at, device, tenant_id) VALUES (\((1...6).map { d.placeholder($0) }.joined(separator: ", ")))"
        let user: String? = try await store.write { tx in
            guard let row = try tx.connection.execute(find, [.text(old)]).rows.first, case let .text(user) = row.at(0),
                  case let .int(until) = row.at(1), until == 0 || now < until else { return nil }
            try tx.connection.execute(delete, [.text(old)], wantRows: false)
            try tx.connection.execute(insert, [.text(Self.hash(new)), .text(user), .int(expires), .int(now), row.at(2), row.at(3)],
                                      wantRows: false)
            return user
        }
        guard let user else { return nil }
        revoked([old])
        return (new, user, expires)
    }

    /// What `selectTenant` did.
    public enum TenantSelection: Sendable { case selected, noSession, refused }

    /// Sets the active organisation of `token`'s live session (nil: none) when `allowed`
    /// says so. `allowed` reads the membership inside the same write transaction: checked
    /// before it, a removal committed in between was undone by this write, and the removed
    /// member kept acting in the organisation.
    public func selectTenant(_ token: String, _ tenantID: String?,
                             allowed: @escaping @Sendable (StoreConnection) throws -> Bool) async throws -> TenantSelection {
        let hash = Self.hash(token), now = Self.now(), d = dialect
        let find = "SELECT expires_at FROM _pylon_sessions WHERE token_hash = \(d.placeholder(1))"
        let update = "UPDATE _pylon_sessions SET tenant_id = \(d.placeholder(1)) WHERE token_hash = \(d.placeholder(2))"
        let outcome = try await store.write { tx -> TenantSelection in
            guard let row = try tx.connection.execute(find, [.text(hash)]).rows.first, case let .int(until) = row.at(0),
                  until == 0 || now < until else { return .noSession }
            guard try allowed(tx.connection) else { return .refused }
            try tx.connection.execute(update, [tenantID.map { .text($0) } ?? .null, .text(hash)], wantRows: false)
            return .selected
        }
        if outcome == .selected { forget([hash]) }
        return outcome
    }

    /// In `tx`: the sessions acting in organisation `tenantID` (only `userID`'s, when given)
    /// act in none — their user left it, or it is gone. Their token hashes go to
    /// `tx.endedSessions`, which the writer hands to `tenantCleared` once `tx` has committed
    /// (`StoreThreads.onSessionsEnded`), whichever write did it. Each row's trigger logs the
    /// change, so every other host drops them from its cache and ends their streams too
    /// (`SessionWatcher`).
    package static func clearTenant(_ tx: WriteTransaction, _ tenantID: String, userID: String?) throws {
        let d = tx.dialect
        var match = "tenant_id = \(d.placeholder(1))"
        var params: [SQLValue] = [.text(tenantID)]
        if let userID {
            match += " AND user_id = \(d.placeholder(2))"
            params.append(.text(userID))
        }
        let hashes = try tx.connection.execute("SELECT token_hash FROM _pylon_sessions WHERE \(match)", params).rows.compactMap { $0.at(0).textValue }
        if !hashes.isEmpty { try tx.write("UPDATE _pylon_sessions SET tenant_id = NULL WHERE \(match)", params) }
        tx.endedSessions += hashes
    }

    /// After `clearTenant`'s commit: the cache forgets those sessions and the streams they
    /// opened (which read as the organisation) end now; clients reconnect without it.
    package func tenantCleared(_ hashes: [String]) {
        revoked(hashes)
    }

    /// Makes the live guest session `token` the session of `userID` (Pylon's `upgrade`);
    /// false when it is not a live guest session. Its streams end, so clients reconnect as
    /// the new user.
    public func upgradeGuest(_ token: String, to userID: String) async throws -> Bool {
        let hash = Self.hash(token), now = Self.now(), d = dialect
        let find = "SELECT user_id, expires_at FROM _pylon_sessions WHERE token_hash = \(d.placeholder(1))"
        let update = "UPDATE _pylon_sessions SET user_id = \(d.placeholder(1)) WHERE token_hash = \(d.placeholder(2))"
        let done = try await store.write { tx in
            guard let row = try tx.connection.execute(find, [.text(hash)]).rows.first, row.at(0).textValue?.hasPrefix("guest_") == true,
                  case let .int(until) = row.at(1), until == 0 || now < until else { return false }
            try tx.connection.execute(update, [.text(userID), .text(hash)], wantRows: false)
            return true
        }
        if done { revoked([hash]) }
        return done
    }

    /// Revokes every session of `userID`; returns how many there were.
    public func revokeAll(userID: String) async throws -> Int {
        let find = "SELECT token_hash FROM _pylon_sessions WHERE user_id = \(dialect.placeholder(1))"
        let sql = "DELETE FROM _pylon_sessions WHERE user_id = \(dialect.placeholder(1))"
        let hashes: [String] = try await store.write { tx in
            let rows = try tx.connection.execute(find, [.text(userID)]).rows
            try tx.connection.execute(sql, [.text(userID)], wantRows: false)
            return rows.compactMap { if case let .text(h) = $0.at(0) { return h } else { return nil } }
        }
        revoked(hashes)
        return hashes.count
    }

    /// After a committed revocation on this host: out of the cache, streams ended now.
    private func revoked(_ hashes: [String]) {
        forget(hashes)
        if !hashes.isEmpty { onRevoked?(hashes) }
    }

    /// One of a user's live sessions, as `GET /api/auth/sessions` lists it.
    public struct Listed: Sendable {
        public var tokenHash: String
        public var device: String?
        public var createdAt: Int64
        public var expiresAt: Int64
    }

    /// The user's live sessions, newest first (at most `limit`).
    public func list(userID: String, limit: Int = 1000) async throws -> [Listed] {
        let d = dialect
        let sql = "SELECT token_hash, device, created_at, expires_at FROM _pylon_sessions WHERE user_id = \(d.placeholder(1)) "
            + "AND (expires_at = 0 OR expires_at > \(d.placeholder(2))) ORDER BY created_at DESC\(d.limitOffset(limit: String(limit), offset: nil))"
        let rows = try await store.read { conn in try conn.execute(sql, [.text(userID), .int(Self.now())]).rows }
        return rows.compactMap { row in
            guard case let .text(h) = row.at(0), case let .int(created) = row.at(2), case let .int(expires) = row.at(3) else { return nil }
            var device: String?
            if case let .text(t) = row.at(1) { device = t }
            return Listed(tokenHash: h, device: device, createdAt: created, expiresAt: expires)
        }
    }

    /// The expiry (`expires_at`, 0 = never) of each of these sessions that still exists;
    /// a hash missing from the answer has no row.
    package func expiries(_ hashes: [String]) async throws -> [String: Int64] {
        try await streamStates(hashes).mapValues(\.expiresAt)
    }

    /// What a stream's session is now: when it ends (0 = never), the organisation it
    /// acts in (always nil for an API key's) and its user's verified address (always nil
    /// for a JWT's).
    package struct StreamState: Sendable {
        package var expiresAt: Int64
        package var tenantID: String?
        package var email: String?
    }

    /// The state of each of these sessions (or API keys' stream names) that still exists;
    /// a name missing from the answer has no row.
    package func streamStates(_ hashes: [String]) async throws -> [String: StreamState] {
        var out = try await apiKeyStates(hashes.filter { $0.hasPrefix(Self.apiKeyPrefix) })
        let now = Self.now()
        for name in hashes where name.hasPrefix(Self.jwtPrefix) {
            if let e = Self.jwtExpiry(name), now < e { out[name] = StreamState(expiresAt: e) }
        }
        let hashes = hashes.filter { !$0.hasPrefix(Self.apiKeyPrefix) && !$0.hasPrefix(Self.jwtPrefix) }
        guard !hashes.isEmpty else { return out }
        // In chunks: a bound parameter list stays well under every store's limit.
        for start in stride(from: 0, to: hashes.count, by: 500) {
            let chunk = Array(hashes[start..<min(start + 500, hashes.count)])
            let list = (1...chunk.count).map { dialect.placeholder($0) }.joined(separator: ", ")
            let sql = "SELECT s.token_hash, s.expires_at, s.tenant_id, \(verifiedEmail.columns) FROM _pylon_sessions s"
                + "\(verifiedEmail.join(on: "s.user_id")) WHERE s.token_hash IN (\(list))"
            let rows = try await store.read { conn in try conn.execute(sql, chunk.map { SQLValue.text($0) }).rows }
            for row in rows {
                guard case let .text(h) = row.at(0), case let .int(e) = row.at(1) else { continue }
                out[h] = StreamState(expiresAt: e, tenantID: row.at(2).textValue, email: verifiedEmail.value(email: row.at(3), verified: row.at(4)))
            }
        }
        return out
    }
}

extension SessionStore {
    /// Streams opened with an API key are tracked like a session's, under this prefix and
    /// the key's id: revoking the key logs the name in `_pylon_session_changes`
    /// (`ApiKeys.revoke`), and every host's `SessionWatcher` ends those streams.
    package static let apiKeyPrefix = "apikey:"

    package static func apiKeyStream(_ keyID: String) -> String { apiKeyPrefix + keyID }

    /// Streams opened with a JWT are tracked under this prefix, the token's expiry and its
    /// SHA-256: nothing revokes a JWT, so the name alone says how long the stream lives.
    package static let jwtPrefix = "jwt:"

    package static func jwtStream(_ token: String, expiresAt: Int64) -> String { "\(jwtPrefix)\(expiresAt):\(hash(token))" }

    /// The expiry in a `jwtStream` name.
    static func jwtExpiry(_ name: String) -> Int64? {
        let parts = name.split(separator: ":")
        return parts.count == 3 ? Int64(parts[1]) : nil
    }

    /// The keys' expiries (0: none) and their users' verified addresses by their stream
    /// names; a revoked key is absent.
    func apiKeyStates(_ names: [String]) async throws -> [String: StreamState] {
        var out: [String: StreamState] = [:]
        for start in stride(from: 0, to: names.count, by: 500) {
            let chunk = Array(names[start..<min(start + 500, names.count)])
            let list = (1...chunk.count).map { dialect.placeholder($0) }.joined(separator: ", ")
            let sql = "SELECT k.id, k.expires_at, \(verifiedEmail.columns) FROM _pylon_api_keys k\(verifiedEmail.join(on: "k.user_id")) WHERE k.id IN (\(list))"
            let ids = chunk.map { SQLValue.text(String($0.dropFirst(Self.apiKeyPrefix.count))) }
            let rows = try await store.read { conn in try conn.execute(sql, ids).rows }
            for row in rows {
                guard case let .text(id) = row.at(0) else { continue }
                out[Self.apiKeyStream(id)] = StreamState(expiresAt: row.at(1).intValue ?? 0,
                                                         email: verifiedEmail.value(email: row.at(2), verified: row.at(3)))
            }
        }
        return out
    }
}

/// One stripe of `SessionStore`'s cache; `cache` is touched only under `lock`.
private final class CacheStripe: @unchecked Sendable {
    let lock = NIOLock()
    var cache: [String: (session: SessionStore.Session, cachedAt: Int64)] = [:]
}

extension AuthContext {
    /// A signed-in session's caller (never admin; no roles).
    package init(_ s: SessionStore.Session) {
        self.init(userID: s.userID, isAdmin: false, isGuest: s.isGuest, roles: [], tenantID: s.tenantID, email: s.email)
    }
}
