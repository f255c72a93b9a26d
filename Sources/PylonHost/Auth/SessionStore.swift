import Crypto
import Foundation

/// Sessions in the app database (`_pylon_sessions`). Tokens are `pylon_` + 64 hex chars
/// (32 CSPRNG bytes); only their SHA-256 is stored, so a leaked database does not leak
/// usable tokens. Resolved sessions are cached in memory (by hash) for a short time so a
/// request does not cost a database read; logout removes the cache entry at once.
public final class SessionStore: @unchecked Sendable {
    let store: StoreThreads
    let dialect: SQLDialect
    let lifetime: Int64
    private var cache: [String: (session: Session, cachedAt: Int64)] = [:]
    private let lock = NSLock()
    static let cacheSeconds: Int64 = 30

    public struct Session: Sendable {
        public var userID: String
        public var expiresAt: Int64
        public var isGuest: Bool
        public var tenantID: String?
    }

    init(store: StoreThreads, dialect: SQLDialect, lifetime: Int64) {
        self.store = store
        self.dialect = dialect
        self.lifetime = lifetime
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

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
        try await store.write { tx in
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
        let sql = "SELECT user_id, expires_at, tenant_id FROM _pylon_sessions WHERE token_hash = \(dialect.placeholder(1))"
        let row = try await store.readQuick { conn in try conn.execute(sql, [.text(hash)]).rows.first }
        guard let row, case let .text(user) = row.at(0), case let .int(expires) = row.at(1) else { return nil }
        if expires != 0 && now >= expires { return nil }
        var tenant: String?
        if case let .text(t) = row.at(2) { tenant = t }
        let s = Session(userID: user, expiresAt: expires, isGuest: user.hasPrefix("guest_"), tenantID: tenant)
        remember(hash, s, now)
        return s
    }

    /// `resolve` without waiting, when its answer is cached: `.some(session)`, `.some(nil)`
    /// (expired), or nil when the store must be asked (then `resolve`).
    public func resolveCached(_ token: String) -> Session?? {
        fromCache(Self.hash(token), Self.now())
    }

    private func fromCache(_ hash: String, _ now: Int64) -> Session?? {
        guard let hit = cached(hash), now - hit.cachedAt < Self.cacheSeconds else { return nil }
        return .some(hit.session.expiresAt != 0 && now >= hit.session.expiresAt ? nil : hit.session)
    }

    private func cached(_ hash: String) -> (session: Session, cachedAt: Int64)? {
        lock.withLock { cache[hash] }
    }

    private func remember(_ hash: String, _ s: Session, _ now: Int64) {
        lock.withLock {
            if cache.count > 100_000 { cache.removeAll() }
            cache[hash] = (s, now)
        }
    }

    private func forget(_ hash: String) {
        _ = lock.withLock { cache.removeValue(forKey: hash) }
    }

    /// Revokes `token`. Returns whether a session existed.
    @discardableResult
    public func revoke(_ token: String) async throws -> Bool {
        let hash = Self.hash(token)
        forget(hash)
        let find = "SELECT 1 FROM _pylon_sessions WHERE token_hash = \(dialect.placeholder(1))"
        let sql = "DELETE FROM _pylon_sessions WHERE token_hash = \(dialect.placeholder(1))"
        // Asked before deleting: a deferred-write store (D1) reports no row counts until commit.
        return try await store.write { tx in
            let existed = !(try tx.connection.execute(find, [.text(hash)]).rows.isEmpty)
            try tx.connection.execute(sql, [.text(hash)], wantRows: false)
            return existed
        }
    }
}
