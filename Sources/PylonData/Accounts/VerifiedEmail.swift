import PylonCore
import PylonJSON

/// Where `auth.email` (`AuthContext.email`) comes from: the user row's `email`, only while
/// its `emailVerified` is set. An address nobody proved is never an identity (anyone can
/// sign up with someone else's), so without the field — the host cannot tell — there is no
/// `auth.email` either.
///
/// Read in the same statement as the session or the API key it belongs to (a LEFT JOIN of
/// the user entity by id), so a request pays no read for it; the session cache keeps it
/// with the session, and `EmailChanges` drops it when the row changes.
package struct VerifiedEmail: Sendable {
    /// The user entity's table, quoted; nil when the manifest has no such entity or it lacks
    /// `email` or `emailVerified` (then every lookup yields nil).
    private let table: String?
    private let codec: RowCodec?
    private let dialect: SQLDialect
    /// The alias the joined user row has in a lookup's statement.
    static let alias = "pylon_u"

    package init(manifest: Manifest, dialect: SQLDialect) {
        self.dialect = dialect
        let entity = manifest.entities.first { $0.name == manifest.auth.userEntity }
        if let entity, entity.fields.contains(where: { $0.name == "email" }), entity.fields.contains(where: { $0.name == "emailVerified" }) {
            table = dialect.quote(entity.name)
            codec = RowCodec(entity: entity, dialect: dialect)
        } else {
            table = nil
            codec = nil
        }
    }

    /// The two columns a lookup selects after its own (`email`, `emailVerified`), or two NULLs.
    var columns: String {
        guard table != nil else { return "NULL, NULL" }
        return "\(Self.alias).\(dialect.quote("email")), \(Self.alias).\(dialect.quote("emailVerified"))"
    }

    /// The join that brings the user row whose id is `userColumn` (qualified), or "".
    func join(on userColumn: String) -> String {
        guard let table else { return "" }
        return " LEFT JOIN \(table) \(Self.alias) ON \(Self.alias).\(dialect.quote("id")) = \(userColumn)"
    }

    /// `auth.email` from the two selected values.
    func value(email: SQLValue, verified: SQLValue) -> String? {
        guard let codec, let field = codec.field("emailVerified"), case let .text(text) = email else { return nil }
        return Self.proven(codec.decodeValue(verified, field)) ? Self.normalized(text) : nil
    }

    /// `auth.email` of a user row as the change log carries it (nil for no row).
    func value(row: JSONValue?) -> String? {
        guard codec != nil, let row, Self.proven(row["emailVerified"] ?? .null), let text = row["email"]?.stringValue else { return nil }
        return Self.normalized(text)
    }

    /// Whether an `emailVerified` value says the address was proven: set, and not false
    /// (a time, a number or true, by the field's type).
    package static func proven(_ value: JSONValue) -> Bool {
        !value.isNull && value != .bool(false)
    }

    /// The address as the host stores it (trimmed, lowercased); nil for text that is not
    /// an address (written by hand).
    private static func normalized(_ text: String) -> String? {
        (try? EmailAddress(text))?.value
    }
}
