/// Names and helpers shared by every dialect's full-text index (`SQLDialect.enableSearch`).
public enum SearchIndex {
    /// The stable integer document id a searchable entity's table carries for its index.
    public static let docColumn = "_pylon_docid"

    /// The index table of `entity`'s full-text data.
    public static func table(_ entity: String) -> String { "_pylon_fts_\(entity)" }

    /// The unique index on `docColumn`.
    public static func docIndex(_ entity: String) -> String { "_pylon_docid_\(entity)" }

    /// Relative weights of `count` text fields for ranking: the first field listed counts
    /// most, each later one less, the last 1 (e.g. 7, 4, 1 for three fields).
    public static func weights(_ count: Int) -> [Double] {
        (0..<count).map { Double(1 + 3 * (count - 1 - $0)) }
    }

    /// The words of a user's search text: runs of letters, digits and `_` (everything else
    /// separates words, as the tokenizers do), at most 32 of them.
    public static func words(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        for ch in text {
            if ch.isLetter || ch.isNumber || ch == "_" {
                current.append(ch)
            } else if !current.isEmpty {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        return Array(out.prefix(32))
    }
}

/// How a SELECT keeps only the rows matching a full-text query: a JOIN added after the
/// FROM table and/or a WHERE condition, and an expression that orders the best matches
/// first when sorted ascending.
public struct SearchMatch: Sendable {
    public var join: String
    public var condition: String?
    public var rank: String
}
