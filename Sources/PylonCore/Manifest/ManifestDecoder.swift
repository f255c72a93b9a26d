import PylonJSON


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
            if let u = ao["user"], !u.isNull {
                let uo = try obj(u, "$.auth.user")
                if let ent = try optStr(uo, "entity", "$.auth.user") { auth.userEntity = ent }
                for key in ["hide", "expose"] {
                    var names: [String] = []
                    for (n, v) in try arr(uo, key, "$.auth.user", required: false).enumerated() {
                        guard let s = v.stringValue else { throw fail("$.auth.user.\(key)[\(n)]", "expected a field name") }
                        names.append(s)
                    }
                    if key == "hide" { auth.userHide = names } else { auth.userExpose = names }
                }
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
            auth: auth, plugins: plugins, cron: try cronTasks(r), staticSite: try staticSite(r))
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
