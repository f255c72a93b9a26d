import Foundation
import PylonJSON

/// The manifest as served by `GET /api/manifest` (policy expressions blanked unless full).
package enum ManifestJSON {
    static func field(_ f: Field) -> JSONValue {
        var o: [(String, JSONValue)] = [("name", .string(f.name)), ("type", .string(f.typeName)),
                                        ("optional", .bool(f.optional)), ("unique", .bool(f.unique))]
        if let c = f.crdt { o.append(("crdt", .string(c))) }
        return .object(o)
    }

    package static func encode(_ m: Manifest, redactPolicies: Bool) -> JSONValue {
        let entities: [JSONValue] = m.entities.map { e in
            var o: [(String, JSONValue)] = [
                ("name", .string(e.name)), ("fields", .array(e.fields.map(field))),
                ("indexes", .array(e.indexes.map { .object([("name", .string($0.name)), ("fields", .array($0.fields.map { .string($0) })), ("unique", .bool($0.unique))]) })),
            ]
            if !e.relations.isEmpty {
                o.append(("relations", .array(e.relations.map { .object([("name", .string($0.name)), ("target", .string($0.target)), ("field", .string($0.field)), ("many", .bool($0.many))]) })))
            }
            o.append(("crdt", .bool(e.crdt)))
            return .object(o)
        }
        let policies: [JSONValue] = m.policies.map { p in
            var o: [(String, JSONValue)] = [("name", .string(p.name))]
            if let e = p.entity { o.append(("entity", .string(e))) }
            if let a = p.action { o.append(("action", .string(a))) }
            if !redactPolicies {
                if !p.allow.isEmpty { o.append(("allow", .string(p.allow))) }
                for (k, v) in [("allowRead", p.allowRead), ("allowInsert", p.allowInsert), ("allowUpdate", p.allowUpdate),
                               ("allowDelete", p.allowDelete), ("allowWrite", p.allowWrite)] {
                    if let v { o.append((k, .string(v))) }
                }
            }
            return .object(o)
        }
        let named: ([NamedInput]) -> JSONValue = { list in
            .array(list.map { .object([("name", .string($0.name)), ("input", .array($0.input.map(field)))]) })
        }
        return .object([
            ("manifest_version", .int(Int64(m.manifestVersion))), ("name", .string(m.name)), ("version", .string(m.version)),
            ("entities", .array(entities)),
            ("routes", .array(m.routes.map { r in
                var o: [(String, JSONValue)] = [("path", .string(r.path)), ("mode", .string(r.mode))]
                if let q = r.query { o.append(("query", .string(q))) }
                if let a = r.auth { o.append(("auth", .string(a))) }
                return .object(o)
            })),
            ("queries", named(m.queries)), ("actions", named(m.actions)), ("policies", .array(policies)),
        ])
    }
}
