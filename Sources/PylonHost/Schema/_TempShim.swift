// TEMPORARY until ManifestValidator.swift / SchemaDiff.swift land (helper). Delete then.
public enum ManifestValidator { public static func validate(_ m: Manifest) -> [ManifestError] { [] } }
public enum SchemaChange: Sendable, Equatable { case createEntity(Entity); case addColumn(entity: String, field: Field); case createIndex(entity: String, index: Index); case dropIndex(entity: String, name: String) }
public struct SchemaDiffError: Error, Sendable { public var problems: [ManifestError] }
public enum SchemaDiff { public static func plan(from old: [Entity], to new: [Entity]) -> Result<[SchemaChange], SchemaDiffError> { .success([]) } }
public enum SchemaSnapshot { public static func encode(_ entities: [Entity]) -> JSONValue { .array([]) }; public static func decode(_ v: JSONValue) throws -> [Entity] { [] } }
