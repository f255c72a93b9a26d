import Crypto

/// The database names of an entity's indexes. A manifest names indexes per entity, as
/// Pylon does (`by_user` on both `Address` and `CartItem`), while SQLite and PostgreSQL
/// keep one namespace of index names per database; so the physical name is derived from
/// the entity and the index name: `<Entity>_<index>`, Pylon's own naming.
///
/// Length-safe: PostgreSQL silently cuts identifiers at 63 bytes, which would make two
/// long names one (and `CREATE INDEX IF NOT EXISTS` then skips the second index without a
/// word). A name that would be longer keeps its first 46 bytes and ends with `_` and 16
/// hex digits of the SHA-256 of the full entity and index names, so it is unique, stable
/// across hosts and versions, and the same on both dialects.
///
/// Case: both databases fold or compare these names so that two that differ only in case
/// may clash; `ManifestValidator` refuses a manifest whose physical names clash with each
/// other or with a table.
package enum IndexNames {
    /// NAMEDATALEN - 1 on PostgreSQL.
    static let maxLength = 63

    /// The index `index` of `entity` (a manifest `indexes` entry).
    package static func declared(_ entity: String, _ index: String) -> String {
        bounded(entity + "_" + index, key: entity + "\u{0}" + index)
    }

    /// The index behind a `unique: true` field.
    package static func unique(_ entity: String, _ field: String) -> String {
        bounded("_pylon_uq_" + entity + "_" + field, key: "uq\u{0}" + entity + "\u{0}" + field)
    }

    /// `name` when it fits; else its prefix and a digest of `key` (which says what `name`
    /// was made from, unambiguously).
    static func bounded(_ name: String, key: String) -> String {
        guard name.utf8.count > maxLength else { return name }
        let digest = RowID.hex(bytes: SHA256.hash(data: Array(key.utf8)).prefix(8))
        // Names are ASCII identifiers (`ManifestValidator.isIdentifier`), so bytes are characters.
        return String(decoding: name.utf8.prefix(maxLength - 17), as: UTF8.self) + "_" + digest
    }
}
