import Testing
@testable import PylonHost

@Suite("JSON parser and writer")
struct JSONTests {
    @Test func roundTripKeepsOrderAndNumberKinds() throws {
        let text = #"{"b":1,"a":2.5,"c":[true,false,null,"x\n\"y\""],"d":{"z":3.0},"e":-0.5e3}"#
        let v = try JSONParser.parse(text)
        #expect(v["b"] == .int(1))
        #expect(v["a"] == .double(2.5))
        #expect(v["d"]?["z"] == .double(3.0))
        #expect(v["e"] == .double(-500))
        let out = JSONWriter.string(v)
        #expect(out == #"{"b":1,"a":2.5,"c":[true,false,null,"x\n\"y\""],"d":{"z":3.0},"e":-500.0}"#)
    }

    @Test func unicodeEscapesAndSurrogates() throws {
        let v = try JSONParser.parse(#""\u00e9\ud83d\ude00""#)
        #expect(v == .string("é😀"))
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#""\ud83d""#) }
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "tru", "\"\u{01}\"", "{\"a\":1}x", "[1 2]", "-", "\"\\x\""])
    func malformedInputIsRejected(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    /// `validate` (for JSON that is only passed on) must accept and refuse exactly what
    /// `parse` does, with the same error.
    @Test func validateAgreesWithParse() {
        var inputs: [[UInt8]] = ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "tru", "\"\u{01}\"", "{\"a\":1}x", "[1 2]", "-", "\"\\x\"",
                                 #"{"b":1,"a":2.5,"c":[true,false,null,"x\n\"y\""],"d":{"z":3.0},"e":-0.5e3}"#, #""\u00e9\ud83d\ude00""#,
                                 #""\ud83d""#, #""\ude00""#, #""\ud83dx""#, "[]", "{}", " [ { } , [ ] ] ", "1e", "-0.5E+3", "\"é\"",
                                 "{\"a\":}", "{1:2}", "[1,2", "nul", "9223372036854775807", "92233720368547758070"].map { Array($0.utf8) }
        inputs.append([0x22, 0xFF, 0xFE, 0x22])
        inputs.append(Array((String(repeating: "[", count: 256) + String(repeating: "]", count: 256)).utf8))
        inputs.append(Array((String(repeating: "{\"k\":", count: 257) + "1" + String(repeating: "}", count: 257)).utf8))
        inputs.append(Array((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8))
        for bytes in inputs {
            var parsed: String?
            var validated: String?
            do { _ = try JSONParser.parse(bytes) } catch { parsed = error.description }
            do { try JSONParser.validate(bytes) } catch { validated = error.description }
            #expect(parsed == validated, "\(String(decoding: bytes.prefix(60), as: UTF8.self))")
        }
    }

    @Test func deepNestingIsRefusedNotCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONParser.parse(ok) }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func bigIntegersFallBackToDouble() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("92233720368547758070") == .double(92233720368547758070))
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        #expect(JSONWriter.string(.string("a\u{01}b\tc")) == #""a\u0001b\tc""#)
        #expect(JSONWriter.string(.double(.nan)) == "null")
    }

    @Test func duplicateKeysKeepTheLast() throws {
        let v = try JSONParser.parse(#"{"a":1,"a":2}"#)
        #expect(v["a"] == .int(2))
        #expect(v.objectValue?.count == 1)
    }

    /// Keys compare by code points, as in JavaScript: KELVIN SIGN + "ey" is canonically
    /// equivalent to "Key" (Swift's `==` says equal) but is another key, in small objects
    /// and in large ones (`slots`), and for lookup.
    @Test func keysCompareByCodePointsNotCanonicalEquivalence() throws {
        let small = try JSONParser.parse("{\"Key\":1,\"\u{212A}ey\":2}")
        #expect(small.objectValue?.count == 2)
        #expect(small["Key"] == .int(1) && small["\u{212A}ey"] == .int(2))
        let precomposed = try JSONParser.parse(#"{"caf\u00e9":1}"#)
        #expect(precomposed["cafe\u{301}"] == nil && precomposed["caf\u{e9}"] == .int(1))
        let many = "{" + (0..<20).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"Key\":1,\"\u{212A}ey\":2,\"Key\":3}"
        let large = try JSONParser.parse(many)
        #expect(large.objectValue?.count == 22 && large["Key"] == .int(3) && large["\u{212A}ey"] == .int(2))
        #expect(JSONValue.object([("Key", 1)]) != JSONValue.object([("\u{212A}ey", 1)]))
    }

    /// Fuzzing (bench/fuzz.sh, json): `1e400` parsed as infinity, which JSONWriter writes as
    /// `null`, so a stored value silently changed. Out-of-range numbers are refused, by
    /// `validate` as by `parse`; tiny ones still underflow to 0 as every parser does.
    @Test(arguments: ["1e400", "-1e400", "[0, 1E+309]", "{\"n\": 2.5e99999}", String(repeating: "9", count: 310),
                      "-" + String(repeating: "1", count: 320) + ".5"])
    func numbersBeyondADoubleAreRefused(_ text: String) {
        var parsed: JSONParseError?
        var validated: JSONParseError?
        do { _ = try JSONParser.parse(text) } catch { parsed = error }
        do { try JSONParser.validate(Array(text.utf8)) } catch { validated = error }
        #expect(parsed?.message.hasPrefix("number out of range") == true, "\(text.prefix(40)): \(String(describing: parsed))")
        #expect(parsed?.description == validated?.description)
    }

    @Test func numbersAtTheEdgeOfADoubleStillParse() throws {
        #expect(try JSONParser.parse("1.7976931348623157e308") == .double(.greatestFiniteMagnitude))
        #expect(try JSONParser.parse("1e-400") == .double(0))
        #expect(try JSONParser.parse(String(repeating: "9", count: 300)).doubleValue?.isFinite == true)
        #expect(try JSONParser.parse("0." + String(repeating: "0", count: 400) + "1") == .double(0))
    }

    /// An object of 100,000 distinct keys (1.4 MB, under the body limit) took minutes of CPU
    /// when each key was checked for a duplicate by a scan; it must parse, and a duplicate
    /// far from its first occurrence still replaces the value in place.
    @Test func manyKeysParseAndLateDuplicatesReplaceInPlace() throws {
        let body = "{" + (0..<100_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k3\":\"last\"}"
        let pairs = try #require(try JSONParser.parse(body).objectValue)
        #expect(pairs.count == 100_000)
        #expect(pairs[3].0 == "k3" && pairs[3].1 == .string("last"))
        #expect(pairs[99_999].0 == "k99999")
        try JSONParser.validate(Array(body.utf8))
    }
}

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
