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

    /// A row's relevance to `words` from its own text alone, as SQL (SQLite and D1): how
    /// often each word (lowercased; the first `rankedWords`) occurs in each of `fields` (SQL
    /// column expressions, in `search.text` order), weighted by `weights`. Counted as
    /// substrings of the ASCII-lowercased text, so a prefix query's stem counts its longer
    /// words too. Words are letters, digits and `_` only, so they are safe as literals.
    public static func rowScore(fields: [String], words: [String]) -> String {
        let ranked = words.prefix(rankedWords).map { $0.lowercased() }.filter { !$0.isEmpty }
        guard !ranked.isEmpty, !fields.isEmpty else { return "0" }
        var terms: [String] = []
        for (field, weight) in zip(fields, weights(fields.count)) {
            let text = "lower(coalesce(\(field), ''))"
            for word in ranked {
                let literal = "'" + word.replacingOccurrences(of: "'", with: "''") + "'"
                terms.append("\(Int(weight)) * ((length(\(text)) - length(replace(\(text), \(literal), ''))) / \(word.unicodeScalars.count))")
            }
        }
        return "(" + terms.joined(separator: " + ") + ")"
    }

    /// How many of a query's words count towards a row's rank (each costs a pass over the
    /// row's text fields).
    public static let rankedWords = 8

    /// The most words and bytes a caller's raw full-text query (`$search`) may have: FTS5's
    /// cost grows faster than the query (an OR of every two-letter prefix, 47 KB, held a
    /// reader for 15 s over 100,000 rows). `/api/search` keeps its first `maxWords` words.
    public static let maxWords = 32
    public static let maxQueryBytes = 1024

    /// The words of a user's search text: runs of letters, digits and `_` (everything else
    /// separates words, as the tokenizers do), at most 32 of them.
    public static func words(_ text: String) -> [String] {
        Array(allWords(text).prefix(maxWords))
    }

    /// Every word of `text` (see `words`).
    public static func allWords(_ text: String) -> [String] {
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
        return out
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
