import PylonJSON

/// A read rule as a SQL condition for one caller (DESIGN.md §4: rules that compare fields
/// with `auth.*` values or literals compile to SQL predicates, so filtered lists use
/// indexes and LIMIT/OFFSET count readable rows).
///
/// Built per request from the parsed rule (`PolicyNode`) with the caller's `auth.*` values
/// substituted, so only constants and columns remain. A rule compiles only when the SQL
/// gives exactly the evaluator's answer for every row the host can store; anything else
/// (a comparison of two fields, a field compared with a boolean sub-expression, a number
/// that a column's type cannot hold exactly, a string SQL cannot bind) makes
/// `RowPredicate.compile` return nil, and the caller filters row by row as before.
///
/// Why it is exact: a row's `data.F` is what `RowCodec.decode` makes of the column, so its
/// JSON type is fixed by the field's storage class (or it is null). Each comparison is
/// therefore decided per type: mismatched types are constant false (never SQL's coercion,
/// so `"5"` never equals 5), numbers are bound in the column's own type when they convert
/// exactly, strings order by bytes (`SQLDialect.binaryOrder`), booleans as `RowCodec`
/// decodes them. Negation is pushed down to the comparisons (negation normal form), each
/// negated comparison spelling out its NULL case, so SQL's three-valued logic never
/// decides: a NULL inside the monotone AND/OR tree only ever stands for "false".
public indirect enum RowPredicate: Sendable, Equatable {
    case always(Bool)
    /// `column IS NULL` (`isNull`) or `column IS NOT NULL`.
    case null(column: String, isNull: Bool)
    /// `column op value`; with `orNull`, `(column IS NULL OR column op value)`.
    case compare(column: String, op: Operator, value: SQLValue, orNull: Bool, binaryOrder: Bool)
    case and([RowPredicate])
    case or([RowPredicate])

    public enum Operator: String, Sendable {
        case equal = "=", notEqual = "<>", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="

        /// The operator true exactly where this one is false (for non-null values of one type).
        var negated: Operator {
            switch self {
            case .equal: return .notEqual
            case .notEqual: return .equal
            case .less: return .greaterOrEqual
            case .lessOrEqual: return .greater
            case .greater: return .lessOrEqual
            case .greaterOrEqual: return .less
            }
        }

        /// The operator with its operands swapped (`k < c` is `c > k`).
        var mirrored: Operator {
            switch self {
            case .less: return .greater
            case .lessOrEqual: return .greaterOrEqual
            case .greater: return .less
            case .greaterOrEqual: return .lessOrEqual
            default: return self
            }
        }
    }

    /// The condition's SQL over `table`'s columns; `bind` binds a value and returns its
    /// placeholder (values are bound in the order they appear in the text).
    package func sql(table: String, _ dialect: SQLDialect, bind: (SQLValue) -> String) -> String {
        switch self {
        case let .always(b):
            return b ? "1 = 1" : "1 = 0"
        case let .null(column, isNull):
            return "\(dialect.quote(table)).\(dialect.quote(column)) IS \(isNull ? "" : "NOT ")NULL"
        case let .compare(column, op, value, orNull, binaryOrder):
            let col = "\(dialect.quote(table)).\(dialect.quote(column))"
            let lhs = binaryOrder ? dialect.binaryOrder(col) : col
            let test = "\(lhs) \(op.rawValue) \(bind(value))"
            return orNull ? "(\(col) IS NULL OR \(test))" : test
        case let .and(items):
            return "(" + items.map { $0.sql(table: table, dialect, bind: bind) }.joined(separator: " AND ") + ")"
        case let .or(items):
            return "(" + items.map { $0.sql(table: table, dialect, bind: bind) }.joined(separator: " OR ") + ")"
        }
    }

    static func all(_ items: [RowPredicate]) -> RowPredicate { join(items, and: true) }

    static func any(_ items: [RowPredicate]) -> RowPredicate { join(items, and: false) }

    /// The conjunction (`and`) or disjunction of `items`, with constants folded away and
    /// nested joins of the same kind flattened.
    private static func join(_ items: [RowPredicate], and conjunction: Bool) -> RowPredicate {
        var kept: [RowPredicate] = []
        for item in items {
            switch item {
            case let .always(b):
                if b != conjunction { return item } // false decides an AND, true an OR
            case let .and(inner) where conjunction: kept += inner
            case let .or(inner) where !conjunction: kept += inner
            default: kept.append(item)
            }
        }
        if kept.isEmpty { return .always(conjunction) }
        return kept.count == 1 ? kept[0] : (conjunction ? .and(kept) : .or(kept))
    }

    /// `node` as a condition over `entity`'s rows for the caller in `input` (its `data`,
    /// `existing` and `input` are ignored: a read has no `existing`), or nil when it cannot
    /// be compiled exactly. `positive` false compiles the negation.
    static func compile(_ node: PolicyNode, entity: Entity, _ input: PolicyInput, _ dialect: SQLDialect,
                        positive: Bool = true) -> RowPredicate? {
        RowPredicateCompiler(entity: entity, input: input, dialect: dialect).condition(node, positive)
    }
}

/// The recursive part of `RowPredicate.compile`.
private struct RowPredicateCompiler {
    let entity: Entity
    let input: PolicyInput
    let dialect: SQLDialect

    /// What one side of a comparison is once the caller is known.
    enum Operand {
        case constant(JSONValue)
        case column(String, StorageClass)
    }

    /// A constant as a parameter of a column's storage class.
    enum Typed {
        case value(SQLValue)
        case null
        /// Another JSON type: never equal, never ordered.
        case mismatch
    }

    func condition(_ node: PolicyNode, _ positive: Bool) -> RowPredicate? {
        if !node.readsRow {
            return .always(PolicyCompiler.condition(node)(input) == positive)
        }
        switch node {
        case let .not(x):
            return condition(x, !positive)
        case let .and(items), let .or(items):
            var parts: [RowPredicate] = []
            for item in items {
                guard let p = condition(item, positive) else { return nil }
                parts.append(p)
            }
            let conjunction: Bool
            if case .and = node { conjunction = positive } else { conjunction = !positive }
            return conjunction ? RowPredicate.all(parts) : RowPredicate.any(parts)
        case let .list(items):
            // A non-empty array literal is truthy whatever it holds.
            return .always(!items.isEmpty == positive)
        case .path:
            guard let value = operand(node) else { return nil }
            return truthy(value, positive)
        case let .compare(op, l, r):
            return compare(op, l, r, positive)
        case .literal, .hasRole, .hasAnyRole:
            return nil // row-independent, handled above
        }
    }

    /// A path or row-independent node as a value; nil for anything else (a boolean
    /// sub-expression over the row, an array holding row values, `data` itself).
    func operand(_ node: PolicyNode) -> Operand? {
        if !node.readsRow { return .constant(PolicyCompiler.value(node)(input)) }
        guard case let .path(path) = node else { return nil }
        switch path {
        case let .data(segments):
            guard let name = segments.first else { return nil } // `data`: the whole row
            if segments.count > 1 { return .constant(.null) } // a field's value has no members
            if name == "id" { return .column("id", .text) }
            guard let field = entity.fields.first(where: { $0.name == name }) else { return .constant(.null) }
            guard let type = field.type else { return nil }
            return .column(name, type.storage)
        case .existing:
            return .constant(.null) // reads have no `existing`
        default:
            return nil
        }
    }

    /// `k` bound in `storage`'s type, or nil when it has no exact equivalent there.
    func typed(_ k: JSONValue, _ storage: StorageClass) -> Typed? {
        switch (k, storage) {
        case (.null, _):
            return .null
        case let (.string(s), .text):
            // PostgreSQL text cannot hold NUL, so such a value cannot be bound.
            return s.utf8.contains(0) ? nil : .value(.text(s))
        case let (.int(i), .integer):
            return .value(.int(i))
        case let (.double(d), .integer):
            guard let i = Int64(exactly: d) else { return nil }
            return .value(.int(i))
        case let (.double(d), .real):
            return d.isFinite ? .value(.double(d)) : nil
        case let (.int(i), .real):
            let d = Double(i)
            guard Int64(exactly: d) == i else { return nil }
            return .value(.double(d))
        case let (.bool(b), .boolean):
            return .value(dialect.bind(b))
        default:
            return .mismatch
        }
    }

    /// `PolicyValues.truthy` of a column: null, false, 0, "" are false.
    func truthy(_ operand: Operand, _ positive: Bool) -> RowPredicate? {
        switch operand {
        case let .constant(k):
            return .always(PolicyValues.truthy(k) == positive)
        case let .column(name, storage):
            let zero: SQLValue
            switch storage {
            case .text: zero = .text("")
            case .integer: zero = .int(0)
            case .real: zero = .double(0)
            case .boolean: zero = dialect.bind(false)
            }
            return positive
                ? .compare(column: name, op: .notEqual, value: zero, orNull: false, binaryOrder: false)
                : .compare(column: name, op: .equal, value: zero, orNull: true, binaryOrder: false)
        }
    }

    func compare(_ op: PolicyComparison, _ l: PolicyNode, _ r: PolicyNode, _ positive: Bool) -> RowPredicate? {
        if op == .contains { return contains(l, r, positive) }
        guard let left = operand(l), let right = operand(r) else { return nil }
        let sqlOp: RowPredicate.Operator
        switch op {
        case .equal: sqlOp = .equal
        case .notEqual: return compare(.equal, l, r, !positive)
        case .less: sqlOp = .less
        case .lessOrEqual: sqlOp = .lessOrEqual
        case .greater: sqlOp = .greater
        case .greaterOrEqual: sqlOp = .greaterOrEqual
        case .contains: return nil
        }
        switch (left, right) {
        case let (.column(name, storage), .constant(k)):
            return columnTest(name, storage, sqlOp, k, positive)
        case let (.constant(k), .column(name, storage)):
            return columnTest(name, storage, sqlOp.mirrored, k, positive)
        case let (.constant(a), .constant(b)):
            // Both sides fixed (e.g. an unknown field, which reads as null).
            let result: Bool
            switch sqlOp {
            case .equal: result = PolicyValues.equal(a, b)
            case .notEqual: result = !PolicyValues.equal(a, b)
            case .less: result = PolicyValues.order(a, b) == -1
            case .lessOrEqual: result = (PolicyValues.order(a, b) ?? 1) <= 0
            case .greater: result = PolicyValues.order(a, b) == 1
            case .greaterOrEqual: result = (PolicyValues.order(a, b) ?? -1) >= 0
            }
            return .always(result == positive)
        case (.column, .column):
            return nil
        }
    }

    /// `column op k` (`==` or an ordering) with the evaluator's meaning.
    func columnTest(_ name: String, _ storage: StorageClass, _ op: RowPredicate.Operator, _ k: JSONValue,
                    _ positive: Bool) -> RowPredicate? {
        guard let t = typed(k, storage) else { return nil }
        if op == .equal {
            switch t {
            case .null: return .null(column: name, isNull: positive)
            case .mismatch: return .always(!positive)
            case let .value(v):
                // A stored boolean is true when it is not false (as `RowCodec` decodes it).
                if storage == .boolean, case .bool(true) = k { return truthy(.column(name, storage), positive) }
                return .compare(column: name, op: positive ? .equal : .notEqual, value: v, orNull: !positive, binaryOrder: false)
            }
        }
        // Orderings hold only between two numbers or two strings, never with null.
        guard case let .value(v) = t, storage != .boolean else { return .always(!positive) }
        return .compare(column: name, op: positive ? op : op.negated, value: v, orNull: !positive,
                        binaryOrder: storage == .text)
    }

    /// `l in r`: true when `r` is an array holding a value equal to `l`.
    func contains(_ l: PolicyNode, _ r: PolicyNode, _ positive: Bool) -> RowPredicate? {
        let items: [PolicyNode]
        if case let .list(nodes) = r {
            items = nodes
        } else {
            guard let right = operand(r) else { return nil }
            // A column holds a scalar, never an array.
            guard case let .constant(.array(elements)) = right else { return .always(!positive) }
            items = elements.map { .literal($0) }
        }
        var parts: [RowPredicate] = []
        for item in items {
            guard let p = compare(.equal, l, item, positive) else { return nil }
            parts.append(p)
        }
        return positive ? RowPredicate.any(parts) : RowPredicate.all(parts)
    }
}
