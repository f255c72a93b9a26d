import Foundation

/// A condition on one field of a row.
public enum Condition: Sendable {
    case eq(JSON), ne(JSON), gt(JSON), gte(JSON), lt(JSON), lte(JSON)
    case `in`([JSON])
    /// SQL LIKE (`%`, `_`), case-insensitive like SQLite's.
    case like(String)

    func matches(_ value: JSON?) -> Bool {
        let v = value ?? .null
        switch self {
        case let .eq(x): return v == x || Self.numbersEqual(v, x)
        case let .ne(x): return !(v == x || Self.numbersEqual(v, x))
        case let .gt(x): return Self.ordered(v, x) == .orderedDescending
        case let .gte(x): return [.orderedDescending, .orderedSame].contains(Self.ordered(v, x))
        case let .lt(x): return Self.ordered(v, x) == .orderedAscending
        case let .lte(x): return [.orderedAscending, .orderedSame].contains(Self.ordered(v, x))
        case let .in(xs): return xs.contains { v == $0 || Self.numbersEqual(v, $0) }
        case let .like(p): return Self.like(v, p)
        }
    }

    private static func numbersEqual(_ a: JSON, _ b: JSON) -> Bool {
        guard let x = a.doubleValue, let y = b.doubleValue else { return false }
        return x == y
    }

    /// Compares two values of the same kind (numbers, strings, bools); nil otherwise, so a
    /// range condition on a missing or differently typed field does not match.
    static func ordered(_ a: JSON, _ b: JSON) -> ComparisonResult? {
        if let x = a.doubleValue, let y = b.doubleValue { return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame }
        if let x = a.stringValue, let y = b.stringValue { return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame }
        if let x = a.boolValue, let y = b.boolValue { return x == y ? .orderedSame : (!x ? .orderedAscending : .orderedDescending) }
        return nil
    }

    private static func like(_ value: JSON, _ pattern: String) -> Bool {
        let text: String
        switch value {
        case let .string(s): text = s
        case .null: text = ""
        default: text = value.text
        }
        return likeMatch(Array(text.lowercased()), Array(pattern.lowercased()))
    }

    /// `%` any run, `_` one character; iterative with backtracking to the last `%`.
    private static func likeMatch(_ s: [Character], _ p: [Character]) -> Bool {
        var i = 0, j = 0, star = -1, mark = 0
        while i < s.count {
            if j < p.count, p[j] == "_" || p[j] == s[i] { i += 1; j += 1 }
            else if j < p.count, p[j] == "%" { star = j; mark = i; j += 1 }
            else if star >= 0 { j = star + 1; mark += 1; i = mark }
            else { return false }
        }
        while j < p.count, p[j] == "%" { j += 1 }
        return j == p.count
    }
}

public enum SortOrder: Sendable { case asc, desc }

/// A query over the replica: rows of an entity matching every filter, sorted, at most `limit`.
public struct Query: Sendable {
    public var filters: [(field: String, condition: Condition)]
    public var orderBy: [(field: String, order: SortOrder)]
    public var limit: Int?

    public init(where filters: [(field: String, condition: Condition)] = [],
                orderBy: [(field: String, order: SortOrder)] = [], limit: Int? = nil) {
        self.filters = filters
        self.orderBy = orderBy
        self.limit = limit
    }

    /// Evaluates the query over `rows`. Ties fall back to the id, so the order is stable.
    public func run(_ rows: [Row]) -> [Row] {
        var out = rows.filter { row in filters.allSatisfy { $0.condition.matches(row[$0.field]) } }
        out.sort { x, y in
            for (field, order) in orderBy {
                let c = Self.compare(x[field], y[field])
                if c != .orderedSame { return (c == .orderedAscending) == (order == .asc) }
            }
            return x.id < y.id
        }
        if let limit { out = Array(out.prefix(max(0, limit))) }
        return out
    }

    /// Missing and null sort first; values of different kinds by kind.
    private static func compare(_ a: JSON?, _ b: JSON?) -> ComparisonResult {
        let x = a ?? .null, y = b ?? .null
        if x == y { return .orderedSame }
        if x.isNull { return .orderedAscending }
        if y.isNull { return .orderedDescending }
        return Condition.ordered(x, y) ?? (x.text < y.text ? .orderedAscending : .orderedDescending)
    }
}

extension PylonClient {
    /// The replica's rows of `entity` now (queued writes included).
    public func rows(_ entity: String, _ query: Query = Query()) async -> [Row] {
        query.run(await replica.visible(entity))
    }

    /// A query kept up to date over the replica: the first result at once, then a new
    /// result whenever it changes (a change of the entity that leaves the result as it was
    /// emits nothing). A slow reader gets the newest result, not every one in between.
    /// Ends when the reader stops iterating.
    public func liveQuery(_ entity: String, _ query: Query = Query()) -> AsyncStream<[Row]> {
        let replica = self.replica
        let (stream, continuation) = AsyncStream<[Row]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let task = Task {
            let changes = await replica.changes()
            var last: [Row]?
            func refresh() async {
                let rows = query.run(await replica.visible(entity))
                if rows != last {
                    last = rows
                    continuation.yield(rows)
                }
            }
            await refresh()
            for await entities in changes where entities.contains(entity) {
                await refresh()
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
