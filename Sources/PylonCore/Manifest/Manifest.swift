import PylonJSON

/// Pylon's `pylon.manifest.json` (pylon-core.md §1), plus our optional `plugins` section.
/// Decoding (`Manifest.decode`) checks shapes and reports the JSON path of the problem;
/// `ManifestValidator` checks meaning (duplicates, unknown types, dangling references).
public struct Manifest: Sendable {
    public var manifestVersion: Int
    public var name: String
    public var version: String
    public var entities: [Entity]
    public var routes: [Route]
    public var queries: [NamedInput]
    public var actions: [NamedInput]
    public var policies: [Policy]
    public var auth: AuthConfig
    /// Capability short name ("store", "functions", "auth.code", ...) → selection.
    public var plugins: [String: PluginSelection]
    /// Scheduled tasks (`cron`), run as durable jobs.
    public var cron: [CronTask] = []
    /// The web page the host serves beside the API (`static`; ours), if any.
    public var staticSite: StaticSite? = nil

    public func entity(named name: String) -> Entity? { entities.first { $0.name == name } }

    /// `plugins.functions.policies`: "enforce" makes every function's `ctx.db` obey the
    /// caller's policies; absent or "trusted" (the default), functions are the app's trusted
    /// code and bypass them, as in Pylon. A function's own `policies`/`privileged` wins
    /// (`FunctionService.enforcesPolicies`). `ManifestValidator` refuses other values.
    public var functionsEnforcePolicies: Bool { plugins["functions"]?.config["policies"]?.stringValue == "enforce" }
}

/// One table. `id` is implicit (TEXT primary key) and never declared.
public struct Entity: Sendable, Equatable {
    public var name: String
    public var fields: [Field]
    public var indexes: [Index]
    public var relations: [Relation]
    public var crdt: Bool
    /// Full-text search and facets (pylon-core.md §1.6); nil when the entity is not searchable.
    public var search: SearchConfig? = nil

    public func field(named name: String) -> Field? { fields.first { $0.name == name } }
}

/// `search` on an entity: which text fields are indexed for full-text matching, which
/// fields may be counted as facets and sorted on, and the text language (a Postgres
/// text-search configuration name; SQLite's tokenizer ignores it).
public struct SearchConfig: Sendable, Equatable {
    public var text: [String] = []
    public var facets: [String] = []
    public var sortable: [String] = []
    public var language: String = "english"

    public init(text: [String] = [], facets: [String] = [], sortable: [String] = [], language: String = "english") {
        self.text = text
        self.facets = facets
        self.sortable = sortable
        self.language = language
    }

    /// Whether the stored index must be rebuilt to go from `self` to `other` (facets and
    /// sortable fields are query-time only).
    public func sameIndex(as other: SearchConfig) -> Bool { text == other.text && language == other.language }
}

public struct Field: Sendable, Equatable {
    public var name: String
    /// The declared type text, e.g. "string" or "id(User)".
    public var typeName: String
    public var optional: Bool
    public var unique: Bool
    public var crdt: String?

    package init(name: String, typeName: String, optional: Bool, unique: Bool, crdt: String? = nil) {
        self.name = name
        self.typeName = typeName
        self.optional = optional
        self.unique = unique
        self.crdt = crdt
    }

    /// The parsed type, nil when `typeName` is unknown (a validation error).
    public var type: FieldType? { FieldType(parsing: typeName) }
}

/// Manifest field types (pylon-core.md §1.3).
public enum FieldType: Sendable, Equatable {
    case string, int, float, bool, datetime, richtext
    case id(String)

    public init?(parsing text: String) {
        switch text {
        case "string": self = .string
        case "int": self = .int
        case "float", "number": self = .float
        case "bool", "boolean": self = .bool
        case "datetime": self = .datetime
        case "richtext": self = .richtext
        default:
            guard text.hasPrefix("id("), text.hasSuffix(")"), text.count > 4 else { return nil }
            self = .id(String(text.dropFirst(3).dropLast()))
        }
    }

    /// How values are stored: the storage class the dialects map to column types.
    public var storage: StorageClass {
        switch self {
        case .int: return .integer
        case .float: return .real
        case .bool: return .boolean
        default: return .text
        }
    }
}

/// Storage classes a dialect turns into column types.
public enum StorageClass: String, Sendable, Equatable {
    case text, integer, real, boolean
}

public struct Index: Sendable, Equatable {
    public var name: String
    public var fields: [String]
    public var unique: Bool
}

public struct Relation: Sendable, Equatable {
    public var name: String
    public var target: String
    public var field: String
    public var many: Bool
}

public struct Route: Sendable {
    public var path: String
    public var mode: String
    public var query: String?
    public var auth: String?
}

/// A manifest query or action: a name and typed inputs.
public struct NamedInput: Sendable {
    public var name: String
    public var input: [Field]
}

public struct Policy: Sendable {
    public var name: String
    public var entity: String?
    public var action: String?
    public var allow: String
    public var allowRead: String?
    public var allowInsert: String?
    public var allowUpdate: String?
    public var allowDelete: String?
    public var allowWrite: String?
}

public struct AuthConfig: Sendable {
    public var userEntity: String = "User"
    /// Fields of the user's row `GET /api/auth/session` leaves out, besides `passwordHash`
    /// and every `_`-prefixed one (`auth.user.hide`).
    public var userHide: [String] = []
    /// When not empty, the only fields (with `id`) that route shows (`auth.user.expose`).
    public var userExpose: [String] = []
    public var sessionExpiresIn: Int64 = 2_592_000
    public var trustedOrigins: [String] = []
}

/// `plugins.<capability>`: which plugin serves a capability, and its config.
/// `{"store": {"use": "sqlite", "path": "data/app.db"}}` — `use` is a plugin id
/// ("pylon.store.sqlite"), its last dot component ("sqlite"), or "none" for the stub;
/// every other key is passed to the plugin's `create` as its config object.
public struct PluginSelection: Sendable {
    public var use: String?
    public var config: JSONValue
}

/// A manifest problem: stable code, the place (entity/field path) and what to do.
public struct ManifestError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var path: String
    public var message: String

    public init(code: String, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "\(code) at \(path): \(message)" }
}

extension Manifest {
    /// Parse and shape-check a manifest document. Unknown keys are ignored (as in Pylon).
    public static func decode(_ bytes: [UInt8]) throws(ManifestError) -> Manifest {
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch {
            throw ManifestError(code: "MANIFEST_INVALID_JSON", path: "$",
                                message: "the manifest is not valid JSON (\(error)); fix the syntax")
        }
        var d = ManifestDecoder()
        return try d.manifest(root)
    }
}
