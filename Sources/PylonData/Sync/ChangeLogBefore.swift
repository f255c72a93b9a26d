import PylonJSON

/// How a change-log entry's `before` (the row before the write; never sent, only read to
/// judge who may see the change) is stored in `_pylon_changes.before`.
///
/// An update's `data` is the whole row after it, so its `before` differs from `data` only in
/// the fields the update changed: it is stored as those fields alone, `~` then a JSON object
/// of their old values (`~{"title":"old"}`), and rebuilt on read by putting them over
/// `data`. Stored whole, a PATCH of one small field of a 1 MB row logged 2 MB; now it logs
/// the row once. JSON text never starts with `~`, so a `before` stored whole — a delete's
/// (there is no `data` to rebuild it from), one whose fields are not `data`'s, or any entry
/// an older host wrote — reads as it always did. An older host reading a compact `before`
/// cannot parse it and sees none: it then hides an update that took a row out of a
/// reader's sight instead of sending it as a delete.
enum ChangeLogBefore {
    /// Starts a compact `before`: a byte no JSON text starts with.
    static let marker = "~"

    /// The text to store for `before` in an entry whose row after the write is `data`.
    static func stored(_ before: JSONValue?, data: JSONValue?) -> String? {
        guard let before else { return nil }
        if let changed = changedFields(before, data) {
            return marker + JSONWriter.string(.object(changed))
        }
        return JSONWriter.string(before)
    }

    /// `before` as it was written, from its stored text and the entry's `data` (both as
    /// read back from the log); nil when the entry has none or it cannot be read.
    static func read(_ stored: String?, data: JSONValue?) -> JSONValue? {
        guard let stored else { return nil }
        guard stored.hasPrefix(marker) else { return try? JSONParser.parse(stored) }
        guard case let .object(changed)? = try? JSONParser.parse(String(stored.dropFirst(marker.count))),
              case let .object(fields)? = data else { return nil }
        let old = Dictionary(changed, uniquingKeysWith: { first, _ in first })
        return .object(fields.map { key, value in (key, old[key] ?? value) })
    }

    /// The fields of `before` whose values are not exactly `data`'s (in `before`'s order), or
    /// nil when `before` could not be rebuilt from them byte for byte: the two are not
    /// objects with the same keys in the same order, each once.
    static func changedFields(_ before: JSONValue, _ data: JSONValue?) -> [(String, JSONValue)]? {
        guard case let .object(old) = before, case let .object(new)? = data, old.count == new.count else { return nil }
        var keys = Set<String>()
        var changed: [(String, JSONValue)] = []
        for (o, n) in zip(old, new) {
            guard o.0.utf8.elementsEqual(n.0.utf8), keys.insert(o.0).inserted else { return nil }
            if !identical(o.1, n.1) { changed.append(o) }
        }
        return changed
    }

    /// Whether two values are written as the same JSON text. Stricter than `==`, which holds
    /// for 1 and 1.0, for 0.0 and -0.0, for objects in another key order and for strings
    /// that are only canonically equivalent: a field kept from `data` must read back as
    /// the `before` value it stands for.
    static func identical(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x.bitPattern == y.bitPattern
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0.utf8.elementsEqual($1.0.utf8) && identical($0.1, $1.1) }
        default: return false
        }
    }
}
