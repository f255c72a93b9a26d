import PylonJSON
import Testing

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

    /// Strings with bytes ≥ 0x80 are checked wherever they stand (value, key, skipped by
    /// `validate`), after ASCII ones that need no check: overlong, surrogate, truncated and
    /// stray continuation bytes are refused, real multi-byte text is kept as it is.
    @Test(arguments: [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0x80], [0xF4, 0x90, 0x80, 0x80], [0x61, 0xC3]] as [[UInt8]])
    func invalidUTF8IsRejectedEverywhere(_ bad: [UInt8]) {
        let q: [UInt8] = [0x22]
        let asValue = Array(#"{"ok":"plain","v":"#.utf8) + q + bad + q + Array("}".utf8)
        let asKey = Array(#"{"ok":"plain","#.utf8) + q + bad + q + Array(":1}".utf8)
        let nested = Array(#"[1,{"a":["x","#.utf8) + q + bad + q + Array("]}]".utf8)
        for doc in [asValue, asKey, nested] {
            #expect(throws: JSONParseError.self) { try JSONParser.parse(doc) }
            #expect(throws: JSONParseError.self) { try JSONParser.validate(doc) }
        }
    }

    @Test func multiByteTextSurvivesBothPaths() throws {
        let text = "Grüße, 日本語 and 😀"
        let v = try JSONParser.parse(Array(#"{"k\#(text)":"\#(text)","e":"\#(text)\n"}"#.utf8))
        #expect(v["k" + text]?.stringValue == text)
        #expect(v["e"]?.stringValue == text + "\n")
        try JSONParser.validate(Array(#"["\#(text)",{"\#(text)":"\#(text)"}]"#.utf8))
    }

    @Test func bigIntegersFallBackToDouble() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("92233720368547758070") == .double(92233720368547758070))
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        #expect(JSONWriter.string(.string("a\u{01}b\tc")) == #""a\u0001b\tc""#)
        // Escapes at either end, side by side, and between runs of multi-byte text.
        #expect(JSONWriter.string(.string("\"é\\\u{1F}\r\nx🚀\"")) == #""\"é\\\u001f\r\nx🚀\"""#)
        #expect(JSONWriter.string(.string("")) == #""""#)
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

    /// What StoreD1 relies on (moved here with its JSON): a D1 result row is an object whose
    /// keys are the columns in order, and an INTEGER column stays an exact 64-bit integer.
    @Test("Object key order, integers apart from doubles, and 64-bit integers exact, through a round trip")
    func keyOrderAndIntegersRoundTrip() throws {
        let v = try JSONParser.parse(Array(#"{"z":1,"a":1.5,"m":9223372036854775807,"s":"\u00e9\ud83d\ude00\n","n":null,"b":[true,false]}"#.utf8))
        guard case let .object(pairs) = v else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == ["z", "a", "m", "s", "n", "b"])
        #expect(v["z"] == .int(1))
        #expect(v["a"] == .double(1.5))
        #expect(v["m"] == .int(Int64.max))
        #expect(v["s"] == .string("é😀\n"))
        #expect(v["n"] == .null)
        #expect(v["b"] == .array([.bool(true), .bool(false)]))
        #expect(try JSONParser.parse(JSONWriter.encode(v)) == v, "round trip")
        for bad in ["{\"a\":1} x", "{\"a\":", String(repeating: "[", count: 100), "\u{0}garbage"] {
            #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(bad.utf8)) }
        }
    }
}

/// `JSONMembers` / `JSONParser.members`: an object's members located without building it
/// (FnBun's protocol frames). The same grammar as `parse`; string contents inside values are
/// checked only when read.
@Suite("JSON members")
struct JSONMembersTests {
    static func members(_ text: String) throws -> JSONMembers { try JSONMembers(Array(text.utf8)) }

    @Test func locatesRawValuesAndDecodesStrings() throws {
        let f = try Self.members(#" {"type":"return","call_id":"c_1","value":{"a":[1,2,{"b":"}"}],"s":"x\"y"},"n":-1.5e3} "#)
        #expect(f.string("type") == "return")
        #expect(f.string("call_id") == "c_1")
        let value = try #require(f["value"])
        #expect(String(decoding: f.bytes[value], as: UTF8.self) == #"{"a":[1,2,{"b":"}"}],"s":"x\"y"}"#)
        #expect(f.value("value")?["s"] == .string("x\"y"))
        #expect(f.string("value") == nil, "not a string")
        #expect(String(decoding: f.bytes[try #require(f["n"])], as: UTF8.self) == "-1.5e3")
        #expect(f["missing"] == nil && f.string("missing") == nil)
        #expect(try Self.members("{}").members.isEmpty)
    }

    /// As `parse` keeps them: the last of repeated keys; keys compared after decoding escapes.
    @Test func repeatedAndEscapedKeys() throws {
        let f = try Self.members(#"{"type":"a","t\u0079pe":"b","x":1}"#)
        #expect(f.string("type") == "b")
        #expect(try Self.members(#"{"type":"a","type":"c"}"#).string("type") == "c")
        #expect(try Self.members(#"{"typ":"a","types":"b"}"#).string("type") == nil)
    }

    /// What `parse` refuses is refused here too, with the same error, except inside the
    /// strings of values: those are checked when read.
    @Test(arguments: ["", "[]", "1", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1} x", "{\"a\":[1,]}", "{\"a\":01}",
                      "{\"a\":tru}", "{\"a\":\"x}", "{\"a\":{\"b\" 1}}", "{1:2}", "{\"a\":1e400}", "{\"a\":\"\u{01}\"}",
                      "{\"\\ud800\":1}", "{\"a\\x\":1}"])
    func malformedObjectsAreRefused(_ text: String) {
        #expect(throws: JSONParseError.self) { try Self.members(text) }
    }

    @Test func deepNestingIsRefusedNotCrashing() {
        let deep = "{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        #expect(throws: JSONParseError.self) { try Self.members(deep) }
        let ok = "{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"
        #expect(throws: Never.self) { try Self.members(ok) }
    }

    /// A function may return a string `parse` refuses (a lone surrogate from slicing an
    /// emoji): the frame still reads, so the call fails with the host's error instead of
    /// waiting for its timeout; the value itself is refused when it is parsed or read.
    @Test func uncheckedValueContentsLeaveTheFrameReadable() throws {
        let f = try Self.members(#"{"type":"return","call_id":"c_2","value":"\ud83d"}"#)
        #expect(f.string("type") == "return" && f.string("call_id") == "c_2")
        #expect(f.string("value") == nil)
        #expect(f.value("value") == nil)
        var raw = Array(#"{"type":"return","value":"ab"}"#.utf8)
        raw[raw.count - 3] = 0xFF
        let g = try JSONMembers(raw)
        #expect(g.string("type") == "return")
        #expect(g.string("value") == nil, "invalid UTF-8 is refused when read")
    }
}
