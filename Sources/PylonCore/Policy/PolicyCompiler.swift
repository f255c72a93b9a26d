import PylonJSON

/// Value semantics (pylon-core.md §4.3, extended): numbers compare as numbers (ints
/// exactly, `5 == 5.0`), strings by Unicode code point (byte order, like SQLite's BINARY
/// collation, not Swift's canonical equivalence), booleans only with booleans; values of
/// different types are never equal and never ordered.
enum PolicyValues {
    static func truthy(_ v: JSONValue) -> Bool {
        switch v {
        case .null: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0 && !d.isNaN
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return !o.isEmpty
        }
    }

    /// -1, 0, 1; nil when not comparable (NaN).
    static func compareNumbers(_ a: JSONValue, _ b: JSONValue) -> Int? {
        switch (a, b) {
        case let (.int(x), .int(y)): return x < y ? -1 : (x > y ? 1 : 0)
        case let (.double(x), .double(y)):
            if x.isNaN || y.isNaN { return nil }
            return x < y ? -1 : (x > y ? 1 : 0)
        case let (.int(x), .double(y)): return compare(x, y)
        case let (.double(x), .int(y)): return compare(y, x).map { -$0 }
        default: return nil
        }
    }

    /// Exact order of an integer and a double, without rounding the integer.
    static func compare(_ i: Int64, _ d: Double) -> Int? {
        if d.isNaN { return nil }
        if d >= 9_223_372_036_854_775_808.0 { return -1 }
        if d < -9_223_372_036_854_775_808.0 { return 1 }
        let whole = d.rounded(.towardZero)
        let w = Int64(whole)
        if i < w { return -1 }
        if i > w { return 1 }
        let fraction = d - whole
        return fraction > 0 ? -1 : (fraction < 0 ? 1 : 0)
    }

    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case (.int, .int), (.int, .double), (.double, .int), (.double, .double):
            return compareNumbers(a, b) == 0
        case let (.string(x), .string(y)): return JSONValue.sameKey(x, y)
        case let (.array(x), .array(y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return false }
            return x.allSatisfy { pair in y.contains { $0.0 == pair.0 && equal($0.1, pair.1) } }
        default: return false
        }
    }

    /// -1, 0, 1 for number/number and string/string; nil for anything else.
    static func order(_ a: JSONValue, _ b: JSONValue) -> Int? {
        switch (a, b) {
        case let (.string(x), .string(y)):
            if JSONValue.sameKey(x, y) { return 0 }
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : 1
        default: return compareNumbers(a, b)
        }
    }

    static func walk(_ root: JSONValue?, _ segments: [String]) -> JSONValue {
        guard var v = root else { return .null }
        for s in segments {
            guard let next = v[s] else { return .null }
            v = next
        }
        return v
    }
}

/// Turns the AST into closures once; checks then only call them.
enum PolicyCompiler {
    typealias Value = @Sendable (PolicyInput) -> JSONValue
    typealias Condition = @Sendable (PolicyInput) -> Bool
    typealias Gate = @Sendable (PolicyInput) -> Bool?

    static func value(_ node: PolicyNode) -> Value {
        switch node {
        case let .literal(v):
            return { _ in v }
        case let .list(items):
            let fs = items.map(value)
            return { input in .array(fs.map { $0(input) }) }
        case let .path(p):
            switch p {
            case .authUserID: return { $0.auth.userID.map { .string($0) } ?? .null }
            case .authIsAdmin: return { .bool($0.auth.isAdmin) }
            case .authTenantID: return { $0.auth.tenantID.map { .string($0) } ?? .null }
            case .authEmail: return { $0.auth.email.map { .string($0) } ?? .null }
            case .authRoles: return { .array($0.auth.roles.map { .string($0) }) }
            case .authIsGuest: return { .bool($0.auth.isGuest) }
            case .authApiKeyID: return { $0.auth.apiKeyID.map { .string($0) } ?? .null }
            case .authApiKeyScopes: return { .array(AuthContext.scopeList($0.auth.apiKeyScopes).map { .string($0) }) }
            case let .data(segments): return { PolicyValues.walk($0.data, segments) }
            case let .existing(segments): return { PolicyValues.walk($0.existing, segments) }
            case let .input(segments): return { PolicyValues.walk($0.input, segments) }
            case .unknown: return { _ in .null }
            }
        case .hasRole, .hasAnyRole, .not, .and, .or, .compare:
            let c = condition(node)
            return { .bool(c($0)) }
        }
    }

    static func condition(_ node: PolicyNode) -> Condition {
        switch node {
        case let .literal(v):
            let t = PolicyValues.truthy(v)
            return { _ in t }
        case let .list(items):
            let t = !items.isEmpty
            return { _ in t }
        case .path:
            let f = value(node)
            return { PolicyValues.truthy(f($0)) }
        case let .hasRole(role):
            return { $0.auth.isAdmin || $0.auth.roles.contains(role) }
        case let .hasAnyRole(roles):
            return { input in input.auth.isAdmin || input.auth.roles.contains { roles.contains($0) } }
        case let .not(x):
            let c = condition(x)
            return { !c($0) }
        case let .and(items):
            let cs = items.map(condition)
            return { input in
                for c in cs where !c(input) { return false }
                return true
            }
        case let .or(items):
            let cs = items.map(condition)
            return { input in
                for c in cs where c(input) { return true }
                return false
            }
        case let .compare(op, l, r):
            let lf = value(l)
            switch op {
            case .equal:
                let rf = value(r)
                return { PolicyValues.equal(lf($0), rf($0)) }
            case .notEqual:
                let rf = value(r)
                return { !PolicyValues.equal(lf($0), rf($0)) }
            case .less:
                let rf = value(r)
                return { PolicyValues.order(lf($0), rf($0)) == -1 }
            case .lessOrEqual:
                let rf = value(r)
                return { (PolicyValues.order(lf($0), rf($0)) ?? 1) <= 0 }
            case .greater:
                let rf = value(r)
                return { PolicyValues.order(lf($0), rf($0)) == 1 }
            case .greaterOrEqual:
                let rf = value(r)
                return { (PolicyValues.order(lf($0), rf($0)) ?? -1) >= 0 }
            case .contains:
                if case let .literal(.array(elements)) = r {
                    return { input in
                        let x = lf(input)
                        return elements.contains { PolicyValues.equal(x, $0) }
                    }
                }
                let rf = value(r)
                return { input in
                    guard case let .array(elements) = rf(input) else { return false }
                    let x = lf(input)
                    return elements.contains { PolicyValues.equal(x, $0) }
                }
            }
        }
    }

    /// The result when it cannot depend on the row; nil otherwise (Kleene logic).
    static func gate(_ node: PolicyNode) -> Gate {
        if !node.readsRow {
            let c = condition(node)
            return { c($0) }
        }
        switch node {
        case let .not(x):
            let g = gate(x)
            return { g($0).map { !$0 } }
        case let .and(items):
            let gs = items.map(gate)
            return { input in
                var unknown = false
                for g in gs {
                    switch g(input) {
                    case false?: return false
                    case nil: unknown = true
                    case true?: break
                    }
                }
                return unknown ? nil : true
            }
        case let .or(items):
            let gs = items.map(gate)
            return { input in
                var unknown = false
                for g in gs {
                    switch g(input) {
                    case true?: return true
                    case nil: unknown = true
                    case false?: break
                    }
                }
                return unknown ? nil : false
            }
        default:
            return { _ in nil }
        }
    }
}
