import PylonJSON

/// The manifest's policies (pylon-core.md §1.8, §4.4), compiled once per manifest load.
///
/// Differences from Pylon (DESIGN.md §5): an entity with no policy is open only in dev
/// mode and admin-only otherwise; the same holds for actions. Everything else follows
/// Pylon: admin bypasses every check; the policies targeting an entity are ANDed in manifest
/// order; each uses its resolved expression for the operation (read: `allowRead`, then
/// `allow`; insert/update/delete: `allowX`, then `allowWrite`, then `allow` — `allowRead`
/// never falls back to `allowWrite`); a resolved expression that is empty (absent or `""`)
/// is skipped. When every policy of an entity resolves to empty for an operation, that
/// operation is open only in dev mode and admin-only otherwise — Pylon allowed it, which
/// left e.g. update and delete open on an entity that only declared read and insert rules
/// (`unguardedOperations` lists these so the host can say so).
public final class PolicyEngine: Sendable {
    public enum Operation: String, Sendable, CaseIterable {
        case read, insert, update, delete
    }

    /// Whether a list-style read can skip per-row checks.
    public enum ReadGate: Sendable, Equatable {
        /// Every row is readable by this caller.
        case allowAll
        /// No row is readable by this caller.
        case denyAll
        /// The answer depends on the row: filter with `check(.read, entity:, _:)` per row.
        case perRow
    }

    /// How a list-style read keeps only the rows the caller may read (`readFilter`).
    public enum ReadFilter: Sendable, Equatable {
        case allowAll
        case denyAll
        /// The rows matching this condition: every read rule compiled to SQL for this
        /// caller; ANDed into the query, so LIMIT/OFFSET count readable rows.
        case sql(RowPredicate)
        /// A rule SQL cannot evaluate exactly: filter with `check(.read, …)` per row.
        case perRow
    }

    /// One entity policy with its expression resolved per operation; nil = skipped.
    struct EntityRule: Sendable {
        var name: String
        var read: PolicyExpression?
        var insert: PolicyExpression?
        var update: PolicyExpression?
        var delete: PolicyExpression?

        func expression(_ op: Operation) -> PolicyExpression? {
            switch op {
            case .read: return read
            case .insert: return insert
            case .update: return update
            case .delete: return delete
            }
        }
    }

    /// Open (true) or admin-only (false) for entities and actions without a policy.
    public let dev: Bool
    /// The user entity (`auth.user.entity`): its `email` and `emailVerified` are the
    /// host's, written only by the auth flows that prove an address (`identityFields`).
    public let userEntity: String
    /// Fields of the user entity no caller but the admin (and trusted functions) may change
    /// on a stored row, whatever the policies say, and `emailVerified` on a new row too: a
    /// user who could set them could take the sign-ins of whoever owns the address (a magic
    /// code or a provider that vouches for it lands in the account with that email).
    public static let identityFields: Set<String> = ["email", "emailVerified"]
    let entityRules: [String: [EntityRule]]
    /// Action name → each targeting policy's `allow` (nil when empty).
    let actionRules: [String: [PolicyExpression?]]
    private let unprotectedEntityNames: [String]
    private let unprotectedActionNames: [String]
    private let unguarded: [(entity: String, operations: [Operation])]

    /// Compiles every non-empty `allow*` expression of every policy, including ones that a
    /// more specific key shadows, so a typo anywhere fails the load.
    public init(manifest: Manifest, dev: Bool) throws(ManifestError) {
        self.dev = dev
        userEntity = manifest.auth.userEntity
        var entities: [String: [EntityRule]] = [:]
        var actions: [String: [PolicyExpression?]] = [:]
        for (n, p) in manifest.policies.enumerated() {
            let path = p.name.isEmpty ? "$.policies[\(n)]" : "$.policies[\(n)](\(p.name))"
            func compile(_ text: String?, _ key: String) throws(ManifestError) -> PolicyExpression? {
                guard let text, !text.isEmpty else { return nil }
                do {
                    return try PolicyExpression(text)
                } catch {
                    throw ManifestError(
                        code: "POLICY_PARSE_ERROR", path: "\(path).\(key)",
                        message: "at position \(error.position) in `\(text)`: \(error.message) (policy grammar: pylon-core.md §4)")
                }
            }
            let allow = try compile(p.allow, "allow")
            let read = try compile(p.allowRead, "allowRead")
            let insert = try compile(p.allowInsert, "allowInsert")
            let update = try compile(p.allowUpdate, "allowUpdate")
            let delete = try compile(p.allowDelete, "allowDelete")
            let write = try compile(p.allowWrite, "allowWrite")
            if let entity = p.entity {
                entities[entity, default: []].append(EntityRule(
                    name: p.name, read: read ?? allow, insert: insert ?? write ?? allow,
                    update: update ?? write ?? allow, delete: delete ?? write ?? allow))
            }
            if let action = p.action {
                actions[action, default: []].append(allow)
            }
        }
        entityRules = entities
        actionRules = actions
        unprotectedEntityNames = manifest.entities.map(\.name).filter { entities[$0] == nil }
        unprotectedActionNames = manifest.actions.map(\.name).filter { actions[$0] == nil }
        var open: [(entity: String, operations: [Operation])] = []
        for e in manifest.entities {
            guard let rules = entities[e.name] else { continue }
            let ops = Operation.allCases.filter { op in rules.allSatisfy { $0.expression(op) == nil } }
            if !ops.isEmpty { open.append((e.name, ops)) }
        }
        unguarded = open
    }

    /// Manifest entities that no policy targets, in manifest order: open in dev mode,
    /// admin-only otherwise.
    public var unprotectedEntities: [String] { unprotectedEntityNames }

    /// Manifest actions that no policy targets, in manifest order: open in dev mode,
    /// admin-only otherwise.
    public var unprotectedActions: [String] { unprotectedActionNames }

    /// Entities that have policies but none of them says anything about some operations;
    /// those operations are open in dev mode and admin-only otherwise.
    public var unguardedOperations: [(entity: String, operations: [Operation])] { unguarded }

    /// Whether an entity no policy names is open: in dev mode, except the host's own tables
    /// (`_pylon_*`: organisations, members, files), whose change events stay the admin's
    /// even in dev, as the routes that serve them decide who sees what.
    private func openWithoutPolicy(_ entity: String) -> Bool {
        dev && !entity.hasPrefix("_pylon_")
    }

    /// Whether `input.auth` may perform `op` on `entity`; see pylon-core.md §4.4 for which
    /// row each call site passes as `data`/`existing`.
    public func check(_ op: Operation, entity: String, _ input: PolicyInput) -> Bool {
        if input.auth.isAdmin { return true }
        guard let rules = entityRules[entity] else { return openWithoutPolicy(entity) }
        var covered = false
        for rule in rules {
            guard let e = rule.expression(op) else { continue }
            covered = true
            if !e.evaluate(input) { return false }
        }
        // No rule speaks about this operation: fail closed outside dev (Pylon allowed it).
        return covered || dev
    }

    /// Whether `auth` may run action `name` with `input` (the request body). Only `allow`
    /// is consulted.
    public func checkAction(_ name: String, auth: AuthContext, input: JSONValue?) -> Bool {
        if auth.isAdmin { return true }
        guard let rules = actionRules[name] else { return dev }
        let context = PolicyInput(auth: auth, input: input)
        for case let e? in rules where !e.evaluate(context) { return false }
        return true
    }

    /// Whether a list-style read of `entity` can be answered without looking at rows.
    ///
    /// Each read expression is evaluated once with no row, treating every part that reads
    /// `data.*`/`existing.*` as unknown: any policy that is false regardless of the row
    /// gives `.denyAll`; all true gives `.allowAll`; otherwise `.perRow`.
    public func readGate(entity: String, auth: AuthContext) -> ReadGate {
        if auth.isAdmin { return .allowAll }
        guard let rules = entityRules[entity] else { return openWithoutPolicy(entity) ? .allowAll : .denyAll }
        let context = PolicyInput(auth: auth)
        var perRow = false
        var covered = false
        for rule in rules {
            guard let e = rule.read else { continue }
            covered = true
            switch e.rowIndependentResult(context) {
            case false?: return .denyAll
            case nil: perRow = true
            case true?: continue
            }
        }
        if !covered { return dev ? .allowAll : .denyAll }
        return perRow ? .perRow : .allowAll
    }

    /// Whether `op` on `entity` is refused to `auth` whatever the row (its rules are false
    /// without looking at `data`/`existing`). Such a write can be refused before its row is
    /// looked up, which says nothing about rows; one refused for a particular row cannot.
    public func deniesEveryRow(_ op: Operation, entity: String, auth: AuthContext) -> Bool {
        if auth.isAdmin { return false }
        guard let rules = entityRules[entity] else { return !openWithoutPolicy(entity) }
        let context = PolicyInput(auth: auth)
        var covered = false
        for rule in rules {
            guard let e = rule.expression(op) else { continue }
            covered = true
            if e.rowIndependentResult(context) == false { return true }
        }
        return !covered && !dev
    }

    /// `readGate`, with row-dependent rules compiled to a SQL condition for this caller
    /// when every read rule of `entity` compiles exactly (`RowPredicate.compile`); `.perRow`
    /// when one does not.
    public func readFilter(entity: Entity, auth: AuthContext, dialect: SQLDialect) -> ReadFilter {
        switch readGate(entity: entity.name, auth: auth) {
        case .allowAll: return .allowAll
        case .denyAll: return .denyAll
        case .perRow: break
        }
        let input = PolicyInput(auth: auth)
        var parts: [RowPredicate] = []
        for rule in entityRules[entity.name] ?? [] {
            guard let e = rule.read else { continue }
            guard let p = RowPredicate.compile(e.root, entity: entity, input, dialect) else { return .perRow }
            parts.append(p)
        }
        return .sql(RowPredicate.all(parts))
    }
}
