import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

@Suite("Filter compiler")
struct FilterCompilerTests {
    let entity = Entity(
        name: "Todo",
        fields: [
            Field(name: "title", typeName: "string", optional: false, unique: false, crdt: nil),
            Field(name: "done", typeName: "bool", optional: false, unique: false, crdt: nil),
            Field(name: "score", typeName: "float", optional: true, unique: false, crdt: nil),
        ],
        indexes: [], relations: [], crdt: true)

    func compile(_ json: String) throws -> CompiledFilter {
        var c = FilterCompiler(codec: RowCodec(entity: entity, dialect: SQLiteDialect()), dialect: SQLiteDialect())
        return try c.compile(try JSONParser.parse(json))
    }

    @Test func operatorsBecomeBoundParameters() throws {
        let f = try compile(#"{"title":{"$like":"50%_off"},"done":false,"score":{"$gte":1,"$lt":5},"$order":{"score":"desc"},"$limit":10}"#)
        #expect(f.whereSQL == #" WHERE "title" LIKE ? ESCAPE '\' AND "done" = ? AND "score" >= ? AND "score" < ?"#)
        #expect(f.params == [.text("%50\\%\\_off%"), .int(0), .double(1), .double(5)])
        #expect(f.orderSQL == #" ORDER BY "score" DESC, "id" ASC"#)
        #expect(f.limit == 10)
    }

    /// A field name only canonically equivalent to a real one ("\u{212A}ey" for "Key") is
    /// no field: a write with it is INVALID_COLUMN, a filter on it INVALID_FILTER-style.
    @Test func fieldNamesMatchByCodePoints() throws {
        let e = Entity(name: "Lock", fields: [Field(name: "Key", typeName: "string", optional: false, unique: false, crdt: nil)],
                       indexes: [], relations: [], crdt: true)
        let codec = RowCodec(entity: e, dialect: SQLiteDialect())
        #expect(codec.field("Key") != nil && codec.field("\u{212A}ey") == nil)
        #expect(throws: HostError.self) { try codec.checkKeys([("\u{212A}ey", "x")]) }
        var c = FilterCompiler(codec: codec, dialect: SQLiteDialect())
        #expect(throws: HostError.self) { try c.compile(try JSONParser.parse("{\"\u{212A}ey\":\"x\"}")) }
    }

    @Test func nullEqualityAndNullSafeNot() throws {
        let f = try compile(#"{"score":null,"title":{"$not":"x"}}"#)
        #expect(f.whereSQL == #" WHERE "score" IS NULL AND "title" IS NOT ?"#)
        let g = try compile(#"{"score":{"$not":null}}"#)
        #expect(g.whereSQL == #" WHERE "score" IS NOT NULL"#)
    }

    @Test func inHandlesEmptyAndNull() throws {
        #expect(try compile(#"{"title":{"$in":[]}}"#).whereSQL == " WHERE 1 = 0")
        let f = try compile(#"{"score":{"$in":[1.5,null]}}"#)
        #expect(f.whereSQL == #" WHERE ("score" IN (?) OR "score" IS NULL)"#)
    }

    @Test(arguments: [#"{"nope":1}"#, #"{"title":{"$regex":"x"}}"#, #"{"$limit":-1}"#, #"{"title":[1]}"#, "[1]"])
    func badFiltersAreClientErrors(_ json: String) {
        #expect(throws: HostError.self) { try compile(json) }
    }

    @Test func identifiersAreQuoted() {
        #expect(SQLiteDialect().quote(#"a"b"#) == #""a""b""#)
    }
}
