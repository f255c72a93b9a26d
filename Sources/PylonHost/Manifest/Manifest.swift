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

/// Structural decoding with JSON paths in every error.
struct ManifestDecoder {
    func fail(_ path: String, _ message: String, code: String = "MANIFEST_SHAPE") -> ManifestError {
        ManifestError(code: code, path: path, message: message)
    }

    func obj(_ v: JSONValue?, _ path: String) throws(ManifestError) -> JSONValue {
        guard let v, case .object = v else {
            throw fail(path, "expected an object, found \(v?.typeName ?? "nothing")")
        }
        return v
    }

    func str(_ o: JSONValue, _ key: String, _ path: String) throws(ManifestError) -> String {
        guard let v = o[key] else { throw fail("\(path).\(key)", "required key \"\(key)\" is missing") }
        guard let s = v.stringValue else { throw fail("\(path).\(key)", "expected a string, found \(v.typeName)") }
        return s
    }

    func optStr(_ o: JSONValue, _ key: String, _ path: String) throws(ManifestError) -> String? {
        guard let v = o[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw fail("\(path).\(key)", "expected a string, found \(v.typeName)") }
        return s
    }

    func bool(_ o: JSONValue, _ key: String, _ path: String, default def: Bool?) throws(ManifestError) -> Bool {
        guard let v = o[key], !v.isNull else {
            if let def { return def }
            throw fail("\(path).\(key)", "required key \"\(key)\" is missing (true or false)")
        }
        guard let b = v.boolValue else { throw fail("\(path).\(key)", "expected true or false, found \(v.typeName)") }
        return b
    }

    func arr(_ o: JSONValue, _ key: String, _ path: String, required: Bool) throws(ManifestError) -> [JSONValue] {
        guard let v = o[key], !v.isNull else {
            if required { throw fail("\(path).\(key)", "required key \"\(key)\" is missing (use [] for none)") }
            return []
        }
        guard let a = v.arrayValue else { throw fail("\(path).\(key)", "expected an array, found \(v.typeName)") }
        return a
    }

    mutating func manifest(_ root: JSONValue) throws(ManifestError) -> Manifest {
        let r = try obj(root, "$")
        guard let mv = r["manifest_version"] else {
            throw fail("$.manifest_version", "required key \"manifest_version\" is missing; set it to 1")
        }
        guard let version = mv.intValue else {
            throw fail("$.manifest_version", "expected the number 1, found \(mv.typeName)")
        }
        guard version == 1 else {
            throw fail("$.manifest_version", "manifest_version \(version) is not supported; this host reads version 1",
                       code: "MANIFEST_VERSION_UNSUPPORTED")
        }
        var entities: [Entity] = []
        for (n, e) in try arr(r, "entities", "$", required: true).enumerated() {
            entities.append(try entity(e, "$.entities[\(n)]"))
        }
        var routes: [Route] = []
        for (n, e) in try arr(r, "routes", "$", required: false).enumerated() {
            let p = "$.routes[\(n)]"
            let o = try obj(e, p)
            routes.append(Route(path: try str(o, "path", p), mode: try optStr(o, "mode", p) ?? "static",
                                query: try optStr(o, "query", p), auth: try optStr(o, "auth", p)))
        }
        let queries = try namedInputs(r, "queries")
        let actions = try namedInputs(r, "actions")
        var policies: [Policy] = []
        for (n, e) in try arr(r, "policies", "$", required: false).enumerated() {
            let p = "$.policies[\(n)]"
            let o = try obj(e, p)
            policies.append(Policy(
                name: try str(o, "name", p), entity: try optStr(o, "entity", p),
                action: try optStr(o, "action", p), allow: try optStr(o, "allow", p) ?? "",
                allowRead: try optStr(o, "allowRead", p), allowInsert: try optStr(o, "allowInsert", p),
                allowUpdate: try optStr(o, "allowUpdate", p), allowDelete: try optStr(o, "allowDelete", p),
                allowWrite: try optStr(o, "allowWrite", p)))
        }
        var auth = AuthConfig()
        if let a = r["auth"], !a.isNull {
            let ao = try obj(a, "$.auth")
            if let u = ao["user"], !u.isNull, let ent = try optStr(try obj(u, "$.auth.user"), "entity", "$.auth.user") {
                auth.userEntity = ent
            }
            if let s = ao["session"], !s.isNull {
                let so = try obj(s, "$.auth.session")
                if let e = so["expires_in"], !e.isNull {
                    guard let secs = e.intValue, secs >= 0 else {
                        throw fail("$.auth.session.expires_in", "expected a non-negative number of seconds")
                    }
                    auth.sessionExpiresIn = secs
                }
            }
            for (n, o) in try arr(ao, "trusted_origins", "$.auth", required: false).enumerated() {
                guard let s = o.stringValue else { throw fail("$.auth.trusted_origins[\(n)]", "expected a string") }
                auth.trustedOrigins.append(s)
            }
        }
        var plugins: [String: PluginSelection] = [:]
        if let pl = r["plugins"], !pl.isNull {
            guard let pairs = try obj(pl, "$.plugins").objectValue else { return fatalShape() }
            for (cap, sel) in pairs {
                let p = "$.plugins.\(cap)"
                let so = try obj(sel, p)
                let use = try optStr(so, "use", p)
                let rest = so.objectValue!.filter { $0.0 != "use" }
                plugins[cap] = PluginSelection(use: use, config: .object(rest))
            }
        }
        return Manifest(
            manifestVersion: Int(version), name: try str(r, "name", "$"), version: try str(r, "version", "$"),
            entities: entities, routes: routes, queries: queries, actions: actions, policies: policies,
            auth: auth, plugins: plugins)
    }

    private func fatalShape() -> Manifest { preconditionFailure("object checked above") }

    func entity(_ v: JSONValue, _ p: String) throws(ManifestError) -> Entity {
        let o = try obj(v, p)
        let name = try str(o, "name", p)
        let ep = "\(p)(\(name))"
        var fields: [Field] = []
        for (n, f) in try arr(o, "fields", ep, required: true).enumerated() {
            fields.append(try field(f, "\(ep).fields[\(n)]", requireAll: true))
        }
        var indexes: [Index] = []
        for (n, x) in try arr(o, "indexes", ep, required: false).enumerated() {
            let ip = "\(ep).indexes[\(n)]"
            let io = try obj(x, ip)
            var cols: [String] = []
            for (k, c) in try arr(io, "fields", ip, required: true).enumerated() {
                guard let s = c.stringValue else { throw fail("\(ip).fields[\(k)]", "expected a field name string") }
                cols.append(s)
            }
            indexes.append(Index(name: try str(io, "name", ip), fields: cols,
                                 unique: try bool(io, "unique", ip, default: false)))
        }
        var relations: [Relation] = []
        for (n, x) in try arr(o, "relations", ep, required: false).enumerated() {
            let rp = "\(ep).relations[\(n)]"
            let ro = try obj(x, rp)
            relations.append(Relation(name: try str(ro, "name", rp), target: try str(ro, "target", rp),
                                      field: try str(ro, "field", rp), many: try bool(ro, "many", rp, default: false)))
        }
        return Entity(name: name, fields: fields, indexes: indexes, relations: relations,
                      crdt: try bool(o, "crdt", ep, default: true), search: try searchConfig(o, ep))
    }

    func searchConfig(_ o: JSONValue, _ ep: String) throws(ManifestError) -> SearchConfig? {
        guard let v = o["search"], !v.isNull else { return nil }
        let sp = "\(ep).search"
        let so = try obj(v, sp)
        func names(_ key: String) throws(ManifestError) -> [String] {
            var out: [String] = []
            for (k, item) in try arr(so, key, sp, required: false).enumerated() {
                guard let s = item.stringValue else { throw fail("\(sp).\(key)[\(k)]", "expected a field name string") }
                out.append(s)
            }
            return out
        }
        return SearchConfig(text: try names("text"), facets: try names("facets"), sortable: try names("sortable"),
                            language: try optStr(so, "language", sp) ?? "english")
    }

    func field(_ v: JSONValue, _ p: String, requireAll: Bool) throws(ManifestError) -> Field {
        let o = try obj(v, p)
        let name = try str(o, "name", p)
        let fp = "\(p)(\(name))"
        return Field(name: name, typeName: try str(o, "type", fp),
                     optional: try bool(o, "optional", fp, default: false),
                     unique: try bool(o, "unique", fp, default: false),
                     crdt: try optStr(o, "crdt", fp))
    }

    func namedInputs(_ r: JSONValue, _ key: String) throws(ManifestError) -> [NamedInput] {
        var out: [NamedInput] = []
        for (n, q) in try arr(r, key, "$", required: false).enumerated() {
            let p = "$.\(key)[\(n)]"
            let o = try obj(q, p)
            var inputs: [Field] = []
            for (k, f) in try arr(o, "input", p, required: false).enumerated() {
                inputs.append(try field(f, "\(p).input[\(k)]", requireAll: false))
            }
            out.append(NamedInput(name: try str(o, "name", p), input: inputs))
        }
        return out
    }
}
