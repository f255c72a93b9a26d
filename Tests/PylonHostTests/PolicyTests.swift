import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

// MARK: - Fixtures

private func user(_ id: String? = "u1", admin: Bool = false, guest: Bool = false, roles: [String] = [],
                  tenant: String? = nil) -> AuthContext {
    AuthContext(userID: id, isAdmin: admin, isGuest: guest, roles: roles, tenantID: tenant)
}

/// Parses and evaluates `source` once.
private func holds(_ source: String, auth: AuthContext = .anonymous, email: String? = nil, data: JSONValue? = nil,
                   existing: JSONValue? = nil, input: JSONValue? = nil) throws -> Bool {
    var auth = auth
    if let email { auth.email = email }
    return try PolicyExpression(source).evaluate(PolicyInput(auth: auth, data: data, existing: existing, input: input))
}

private func parseError(_ source: String) -> PolicyParseError? {
    do {
        _ = try PolicyExpression(source)
        return nil
    } catch {
        return error
    }
}

private func policy(_ name: String = "p", entity: String? = "Note", action: String? = nil, allow: String = "",
                    read: String? = nil, insert: String? = nil, update: String? = nil, delete: String? = nil,
                    write: String? = nil) -> Policy {
    Policy(name: name, entity: entity, action: action, allow: allow, allowRead: read, allowInsert: insert,
           allowUpdate: update, allowDelete: delete, allowWrite: write)
}

private func manifest(_ policies: [Policy], entities: [String] = ["Note", "Open"],
                      actions: [String] = []) -> Manifest {
    Manifest(manifestVersion: 1, name: "t", version: "1",
             entities: entities.map { Entity(name: $0, fields: [], indexes: [], relations: [], crdt: false) },
             routes: [], queries: [], actions: actions.map { NamedInput(name: $0, input: []) },
             policies: policies, auth: AuthConfig(), plugins: [:])
}

private func engine(_ policies: [Policy], dev: Bool = false, actions: [String] = []) throws -> PolicyEngine {
    try PolicyEngine(manifest: manifest(policies, actions: actions), dev: dev)
}

private func engineError(_ m: Manifest) -> ManifestError? {
    do {
        _ = try PolicyEngine(manifest: m, dev: false)
        return nil
    } catch {
        return error
    }
}

// MARK: - Expressions

@Suite("Policy expressions")
struct PolicyExpressionTests {
    @Test(arguments: [
        ("true", true), ("false", false), ("true && true", true), ("true && false", false),
        ("false && true", false), ("false || true", true), ("false || false", false), ("!false", true),
        ("!true", false), ("!!true", true), ("!(true && false)", true), ("(false || true) && true", true),
        ("true && true && false", false), ("false || false || true", true), ("((true))", true),
    ])
    func booleanOperators(_ source: String, _ expected: Bool) throws {
        #expect(try holds(source) == expected)
    }

    @Test func apiKeyIdAndScopes() throws {
        var key = user("u1")
        key.apiKeyID = "key_1"
        key.apiKeyScopes = "notes:read, notes:write"
        #expect(try holds(#"auth.apiKeyId == "key_1""#, auth: key))
        #expect(try holds(#""notes:write" in auth.apiKeyScopes"#, auth: key))
        #expect(try !holds(#""admin" in auth.apiKeyScopes"#, auth: key))
        #expect(try holds("auth.apiKeyId == null", auth: user("u1")), "a session is no key")
        #expect(try !holds(#""notes:read" in auth.api_key_scopes"#, auth: user("u1")))
    }

    @Test func andBindsTighterThanOr() throws {
        #expect(try holds("true || false && false"))
        #expect(try holds("false && false || true"))
        #expect(try !holds("false && (false || true)"))
        #expect(try !holds("(true || false) && false"))
    }

    @Test func notBindsTighterThanComparison() throws {
        let row: JSONValue = ["s": "a"]
        // (!data.s) == true → false == true
        #expect(try !holds("!data.s == true", data: row))
        #expect(try holds("!(data.s == true)", data: row))
        // Pylon's own example: (!auth.isAdmin) == false
        #expect(try !holds("!auth.isAdmin == false", auth: user()))
        #expect(try holds("!auth.isAdmin == false", auth: user(admin: true)))
    }

    @Test func rightSideOfAComparisonMayBeAnyUnary() throws {
        #expect(try holds("true == !false"))
        #expect(try holds("false == (1 > 2)"))
        #expect(try holds(#"auth.userId == (data.ownerId)"#, auth: user(), data: ["ownerId": "u1"]))
        #expect(try holds(#"true == auth.hasRole("x")"#, auth: user(roles: ["x"])))
        #expect(try holds("(1 == 1) == true"))
    }

    @Test(arguments: [
        ("1 == 1", true), ("1 != 1", false), ("5 == 5.0", true), ("5.0 == 5", true), ("5 != 5.0", false),
        ("0.1 < 0.2", true), ("-3 < 2", true), ("-2.5 < -2", true), ("-2 <= -2.0", true), ("3 > 2.99", true),
        ("3 >= 3", true), ("3 > 3", false), ("2 < 1", false), ("- 4 == -4", true), ("-0 == 0", true),
        ("9007199254740993 == 9007199254740992", false), ("9007199254740993 > 9007199254740992", true),
        ("9223372036854775807 > 9223372036854775806", true), ("-9223372036854775808 < 0", true),
        ("1 == true", false), ("0 == false", false), ("0 == null", false), ("5 == \"5\"", false),
        ("5 != \"5\"", true), ("1 < \"2\"", false), ("1 >= \"2\"", false), ("1 <= \"2\"", false),
    ])
    func numbers(_ source: String, _ expected: Bool) throws {
        #expect(try holds(source) == expected)
    }

    @Test func storedNumbersCompareAsNumbers() throws {
        for n: JSONValue in [.int(5), .double(5.0)] {
            #expect(try holds("data.n == 5", data: ["n": n]))
            #expect(try holds("data.n == 5.0", data: ["n": n]))
            #expect(try holds("data.n >= 4.5 && data.n < 6", data: ["n": n]))
            #expect(try !holds(#"data.n == "5""#, data: ["n": n]))
        }
        #expect(try !holds("data.n == 5", data: ["n": "5"]))
        #expect(try holds("data.n > 0.5", data: ["n": 1]))
        // An integer beyond 2^53 against a double: compared exactly, not through Double.
        #expect(try !holds("data.n == 9007199254740992.0", data: ["n": .int(9_007_199_254_740_993)]))
        #expect(try holds("data.n > 9007199254740992.0", data: ["n": .int(9_007_199_254_740_993)]))
        #expect(try holds("data.n == 9007199254740992.0", data: ["n": .int(9_007_199_254_740_992)]))
        #expect(try holds("data.n < 2", data: ["n": .double(1.5)]))
        #expect(try holds("data.n > 1", data: ["n": .double(1.5)]))
        #expect(try holds("data.n > -2", data: ["n": .double(-1.5)]))
        #expect(try holds("data.n < -1", data: ["n": .double(-1.5)]))
        #expect(try holds("data.n > 9223372036854775807", data: ["n": .double(1e300)]))
        #expect(try holds("data.n < -9223372036854775808", data: ["n": .double(-1e300)]))
    }

    @Test func booleansAreBooleans() throws {
        #expect(try holds("data.flag == true", data: ["flag": true]))
        #expect(try holds("data.flag != true", data: ["flag": false]))
        #expect(try holds("data.flag == false", data: ["flag": false]))
        #expect(try !holds("data.flag == true", data: ["flag": 1]))
        #expect(try !holds("data.flag == 1", data: ["flag": true]))
        #expect(try !holds(#"data.flag == "true""#, data: ["flag": true]))
        #expect(try holds("data.flag", data: ["flag": true]))
        #expect(try !holds("data.flag == false", data: [:]))
        #expect(try !holds("true > false"))
        #expect(try !holds("true >= false"))
    }

    @Test(arguments: [
        (#""a" < "b""#, true), (#""abc" < "abd""#, true), (#""ab" < "abc""#, true), (#""b" <= "b""#, true),
        (#""Z" < "a""#, true), (#""b" > "a""#, true), (#""a" >= "b""#, false), (#""" < "a""#, true),
        (#""é" > "z""#, true), (#""a" < 1"#, false), (#"null < 1"#, false), (#"null <= null"#, false),
        (#"[1] < [2]"#, false),
    ])
    func ordering(_ source: String, _ expected: Bool) throws {
        #expect(try holds(source) == expected)
    }

    @Test func stringsCompareByCodePointNotCanonicalEquivalence() throws {
        // Precomposed é vs e + combining acute: equal to Swift's ==, different bytes.
        #expect(try !holds("data.a == data.b", data: ["a": "\u{E9}", "b": "e\u{301}"]))
        #expect(try holds("data.a == data.b", data: ["a": "\u{E9}", "b": "\u{E9}"]))
    }

    @Test func membership() throws {
        let open: JSONValue = ["status": "open", "n": 5, "tags": ["x", 2, true], "s": "open"]
        #expect(try holds(#"data.status in ["open", "review"]"#, data: open))
        #expect(try !holds(#"data.status in ["closed", "review"]"#, data: open))
        #expect(try !holds(#"data.status in []"#, data: open))
        #expect(try holds("data.n in [1, 5.0]", data: open))
        #expect(try !holds(#"data.n in ["5"]"#, data: open))
        #expect(try holds(#""x" in data.tags"#, data: open))
        #expect(try holds("2 in data.tags && true in data.tags", data: open))
        #expect(try !holds(#""o" in data.s"#, data: open))
        #expect(try !holds("data.missing in data.tags", data: open))
        #expect(try holds("data.missing in [null]", data: open))
        #expect(try !holds(#""x" in data.missing"#, data: open))
        #expect(try holds(#"auth.userId in [data.ownerId, "root"]"#, auth: user(), data: ["ownerId": "u1"]))
        #expect(try holds(#""root" in [data.ownerId, "root"]"#, data: [:]))
        #expect(try holds(#""editor" in auth.roles"#, auth: user(roles: ["viewer", "editor"])))
        #expect(try !holds(#""editor" in auth.roles"#, auth: user()))
        #expect(try holds(#"!("editor" in auth.roles)"#, auth: user()))
        #expect(try holds("[1, 2] in [[1, 2], [3]]"))
    }

    @Test func authPaths() throws {
        let a = user("u1", guest: true, roles: ["r1", "r2"], tenant: "t1")
        #expect(try holds(#"auth.userId == "u1" && auth.user_id == "u1""#, auth: a))
        #expect(try holds("auth.userId == null && auth.user_id == null"))
        #expect(try holds("auth.isAdmin == false && auth.is_admin == false", auth: a))
        #expect(try holds("auth.isAdmin && auth.is_admin", auth: user(admin: true)))
        #expect(try holds(#"auth.tenantId == "t1" && auth.tenant_id == "t1""#, auth: a))
        #expect(try holds("auth.tenantId == null", auth: user()))
        #expect(try holds(#"auth.email == "a@b.io""#, auth: a, email: "a@b.io"))
        #expect(try holds("auth.email == null", auth: a))
        #expect(try holds(#"auth.roles == ["r1", "r2"]"#, auth: a))
        #expect(try holds("auth.roles == []", auth: user()))
        #expect(try holds("auth.roles", auth: a))
        #expect(try !holds("auth.roles", auth: user()))
        #expect(try holds("auth.isGuest && auth.is_guest", auth: a))
        #expect(try holds("auth.isGuest == false", auth: user()))
        // Unknown auth members, and paths below a scalar, read as null.
        #expect(try holds("auth.userID == null && auth.foo == null && auth == null", auth: a))
        #expect(try holds("auth.userId.x == null && auth.roles.x == null", auth: a))
    }

    @Test func rowPaths() throws {
        let row: JSONValue = ["ownerId": "u1", "author": ["id": "u2", "profile": ["name": "Ann"]], "n": 3]
        #expect(try holds("data.ownerId == auth.userId", auth: user(), data: row))
        #expect(try holds(#"data.author.profile.name == "Ann""#, data: row))
        #expect(try holds("data.author.missing.deeper == null", data: row))
        #expect(try holds("data.n.x == null", data: row))
        #expect(try holds("data != null", data: row))
        #expect(try holds("data == null"))
        #expect(try holds("data.ownerId == null"))
        #expect(try holds(#"existing.ownerId == "u1""#, existing: row))
        #expect(try holds("existing.ownerId == null", data: row))
        #expect(try holds(#"data.ownerId == existing.ownerId"#, data: ["ownerId": "u1"], existing: row))
        #expect(try !holds(#"data.ownerId == existing.ownerId"#, data: ["ownerId": "u9"], existing: row))
        #expect(try holds(#"input.amount <= 100 && input.kind == "refund""#, input: ["amount": 40, "kind": "refund"]))
        #expect(try holds("input.amount == null"))
        #expect(try holds(#"data.author == data.author"#, data: row))
        #expect(try !holds(#"data.author == data.author.profile"#, data: row))
    }

    @Test(arguments: [
        ("null", false), ("true", true), ("false", false), (#""""#, false), (#""x""#, true), ("0", false),
        ("1", true), ("-1", true), ("0.0", false), ("0.5", true), ("[]", false), ("[0]", true),
        ("[data.a]", true), ("data.o", true), ("data.e", false), ("data.z", false), ("data.s", true),
        ("data.empty", false),
    ])
    func truthinessOfBareValues(_ source: String, _ expected: Bool) throws {
        let row: JSONValue = ["o": ["k": 1], "e": .object([]), "z": 0, "s": "x", "empty": ""]
        #expect(try holds(source, data: row) == expected)
    }

    @Test func roleFunctions() throws {
        let editor = user(roles: ["editor", "viewer"])
        #expect(try holds(#"auth.hasRole("editor")"#, auth: editor))
        #expect(try !holds(#"auth.hasRole("owner")"#, auth: editor))
        #expect(try holds(#"auth.hasAnyRole("owner", "viewer")"#, auth: editor))
        #expect(try !holds(#"auth.hasAnyRole("owner", 'root')"#, auth: editor))
        #expect(try !holds(#"auth.hasRole("editor")"#))
        #expect(try holds(#"auth.hasRole ( "anything" )"#, auth: user(admin: true)))
        #expect(try holds(#"auth.hasAnyRole("anything")"#, auth: user(admin: true)))
        #expect(try holds(#"!auth.hasRole("owner") && auth.hasRole("viewer")"#, auth: editor))
    }

    @Test func stringLiterals() throws {
        #expect(try holds(#"'single' == "single""#))
        #expect(try holds(#"data.s == "a\nb\tc\rd\0e\\f\"g\'h""#, data: ["s": "a\nb\tc\rd\0e\\f\"g'h"]))
        #expect(try holds(#"data.s == 'it\'s'"#, data: ["s": "it's"]))
        #expect(try holds(#"data.name == "héllo 世界 😀""#, data: ["name": "héllo 世界 😀"]))
    }

    @Test func wideExpressionsDoNotRecurse() throws {
        let wide = Array(repeating: "true", count: 20_000).joined(separator: " && ")
        #expect(try holds(wide))
        let wider = Array(repeating: "false", count: 20_000).joined(separator: " || ") + " || data.x == 1"
        #expect(try holds(wider, data: ["x": 1]))
    }

    @Test func readsRowIsStatic() throws {
        #expect(try PolicyExpression("data.a == 1").readsRow)
        #expect(try PolicyExpression("auth.userId != null || existing.x").readsRow)
        #expect(try PolicyExpression("[data.a] == []").readsRow)
        #expect(try !PolicyExpression(#"auth.userId != null && input.x == 1 && auth.hasRole("a")"#).readsRow)
        #expect(try !PolicyExpression("dataset.a == 1 && existing2.x == null").readsRow)
    }

    @Test(arguments: [
        ("auth.userId = \"x\"", 12, "'=='"),
        ("auth.userId == ", 15, "found the end of the expression"),
        ("(true", 5, "expected ')' to close the '(' at position 0"),
        ("true && ", 8, "expected a value"),
        ("\"abc", 0, "not closed"),
        (#"data.s == "a\qb""#, 12, "unknown escape '\\q'"),
        ("data.x # 1", 7, "unexpected character '#'"),
        ("a == b == c", 7, "cannot be chained"),
        ("a in b != c", 7, "cannot be chained"),
        ("(a == b == c)", 8, "cannot be chained"),
        ("foo(\"x\")", 0, "unknown function 'foo'"),
        ("auth.hasRole(\"a\", \"b\")", 0, "exactly one role"),
        ("auth.hasRole(admin)", 13, "string literals"),
        ("auth.hasAnyRole()", 0, "at least one"),
        ("auth.hasRole(\"a\"", 16, "expected ',' or ')'"),
        ("- data.x < 1", 2, "unary minus"),
        ("--1 < 1", 1, "unary minus"),
        ("x == 1.", 5, "malformed number"),
        ("x == 1.2.3", 5, "malformed number"),
        ("5abc == 1", 0, "malformed number"),
        ("true false", 5, "after a complete expression"),
        ("true)", 4, "after a complete expression"),
        ("1 + 2", 2, "unexpected character '+'"),
        ("", 0, "expected a value"),
        ("   ", 3, "expected a value"),
        ("[1, 2", 5, "expected ',' or ']'"),
        ("[1,]", 3, "expected a value"),
        ("in [1]", 0, "before 'in'"),
        ("a & b", 2, "'&&'"),
        ("a | b", 2, "'||'"),
        ("data.é == 1", 5, "U+E9"),
        ("a == 1" + String(repeating: "0", count: 400), 5, "out of range"),
    ])
    func parseErrorsCarryPositions(_ source: String, _ position: Int, _ fragment: String) {
        let error = parseError(source)
        #expect(error?.position == position, "\(source)")
        #expect(error?.message.contains(fragment) == true, "\(error?.message ?? "parsed") should mention \(fragment)")
    }

    @Test func parseErrorRendering() {
        let e = parseError("auth.userId == (data.x")!
        #expect(e.position == 22)
        #expect(e.description == "at position 22: expected ')' to close the '(' at position 15, found the end of the expression")
        #expect(e.annotated("auth.userId == (data.x") == "auth.userId == (data.x\n" + String(repeating: " ", count: 22)
            + "^ expected ')' to close the '(' at position 15, found the end of the expression")
    }

    @Test func nestingDepthIsLimited() throws {
        func parens(_ n: Int) -> String { String(repeating: "(", count: n) + "true" + String(repeating: ")", count: n) }
        #expect(try holds(parens(10)))
        #expect(try holds(parens(PolicyExpression.maxDepth)))
        let e65 = parseError(parens(PolicyExpression.maxDepth + 1))
        #expect(e65?.position == 64)
        #expect(e65?.message.contains("deeper than 64") == true)
        #expect(parseError(parens(200))?.position == 64)
        #expect(parseError(parens(100_000)) != nil)
        #expect(parseError(String(repeating: "!", count: 200) + "true")?.position == 64)
        #expect(try holds(String(repeating: "!", count: 64) + "true"))
        #expect(parseError(String(repeating: "[", count: 200) + String(repeating: "]", count: 200))?.position == 64)
        // Depth is nesting, not length: siblings do not add up.
        #expect(try holds(Array(repeating: parens(60), count: 50).joined(separator: " && ")))
    }
}

// MARK: - Pylon's own policy tests (pylon-core.md §7.6)

@Suite("Pylon policy conformance")
struct PylonPolicyConformanceTests {
    @Test func andOrNotParentheses() throws {
        let a = user("u1")
        #expect(try holds(#"auth.userId == "u1" && data.status == "open""#, auth: a, data: ["status": "open"]))
        #expect(try !holds(#"auth.userId == "u1" && data.status == "open""#, auth: a, data: ["status": "done"]))
        #expect(try holds(#"auth.userId == "u2" || data.status == "open""#, auth: a, data: ["status": "open"]))
        #expect(try holds(#"!(auth.userId == "u2")"#, auth: a))
        #expect(try holds(#"(auth.userId == "u2" || auth.userId == "u1") && auth.userId != null"#, auth: a))
    }

    @Test func nestedDataPath() throws {
        #expect(try holds("data.author.id == auth.userId", auth: user("u1"), data: ["author": ["id": "u1"]]))
        #expect(try !holds("data.author.id == auth.userId", auth: user("u1"), data: ["author": ["id": "u2"]]))
    }

    @Test func nullComparisons() throws {
        #expect(try holds("data.x == null", data: [:]))
        #expect(try holds("data.x == null", data: ["x": nil]))
        #expect(try !holds("data.x == null", data: ["x": "v"]))
        #expect(try holds("data.x != null", data: ["x": "v"]))
    }

    @Test func stringEquality() throws {
        #expect(try holds(#""abc" == "abc""#))
        #expect(try !holds(#""abc" == "abd""#))
        #expect(try holds(#""abc" != "abd""#))
    }

    @Test func tenantMatch() throws {
        let a = user(tenant: "acme")
        #expect(try holds("auth.tenantId == data.tenantId", auth: a, data: ["tenantId": "acme"]))
        #expect(try !holds("auth.tenantId == data.tenantId", auth: a, data: ["tenantId": "other"]))
    }

    @Test func malformedIsRejectedEvenForAdmin() throws {
        for bad in ["auth.userId ==", "((true)", "data.x = 1", "&& true"] {
            #expect(parseError(bad) != nil)
            // Not servable at all: the manifest does not load, so no caller (admin included)
            // ever reaches an unparsed rule.
            let e = engineError(manifest([policy(read: bad)]))
            #expect(e?.code == "POLICY_PARSE_ERROR")
        }
    }

    @Test func unknownRootIsNull() throws {
        #expect(try holds("foo.bar == null"))
        #expect(try holds("request.user == null", auth: user(admin: true)))
        #expect(try !holds("foo.bar"))
    }

    @Test func escapes() throws {
        #expect(try holds(#"data.s == "line\nnext""#, data: ["s": "line\nnext"]))
        #expect(parseError(#"data.s == "bad\x""#) != nil)
    }

    @Test func utf8Literals() throws {
        #expect(try holds(#"data.city == "Zürich""#, data: ["city": "Zürich"]))
        #expect(try holds(#"data.city == '東京'"#, data: ["city": "東京"]))
    }

    @Test func notPrecedence() throws {
        #expect(try holds("!auth.isAdmin == true", auth: user()))
        #expect(try !holds("!auth.isAdmin == true", auth: user(admin: true)))
    }

    @Test func memberOfScalarAuthFieldIsNull() throws {
        #expect(try holds("auth.isAdmin.foo == null", auth: user(admin: true)))
        #expect(try !holds("auth.isAdmin.foo", auth: user(admin: true)))
    }

    @Test func deepParentheses() throws {
        #expect(parseError(String(repeating: "(", count: 200) + "true" + String(repeating: ")", count: 200)) != nil)
        #expect(try holds(String(repeating: "(", count: 10) + "true" + String(repeating: ")", count: 10)))
    }

    @Test func adminBypassAtEngineLevel() throws {
        let e = try engine([policy(allow: "false")])
        #expect(e.check(.read, entity: "Note", PolicyInput(auth: .admin)))
        #expect(e.check(.delete, entity: "Note", PolicyInput(auth: .admin)))
        #expect(!e.check(.read, entity: "Note", PolicyInput(auth: user())))
    }

    @Test func noPoliciesAllowInDevMode() throws {
        // Pylon: open. Here: open in dev mode only (DESIGN.md §5).
        #expect(try engine([], dev: true).check(.insert, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(try !engine([], dev: false).check(.insert, entity: "Note", PolicyInput(auth: .anonymous)))
    }
}

// MARK: - Engine

@Suite("Policy engine")
struct PolicyEngineTests {
    @Test func adminBypassesEverything() throws {
        let e = try engine([policy(allow: "false", read: "false"), policy("a", entity: nil, action: "go", allow: "false")],
                           actions: ["go"])
        for op in PolicyEngine.Operation.allCases {
            #expect(e.check(op, entity: "Note", PolicyInput(auth: .admin)))
            #expect(e.check(op, entity: "Open", PolicyInput(auth: .admin)))
            #expect(!e.check(op, entity: "Note", PolicyInput(auth: user(roles: ["admin"]))))
        }
        #expect(e.checkAction("go", auth: .admin, input: nil))
        #expect(!e.checkAction("go", auth: user(), input: nil))
        #expect(e.readGate(entity: "Note", auth: .admin) == .allowAll)
        #expect(e.readGate(entity: "Open", auth: .admin) == .allowAll)
    }

    @Test func entitiesWithoutPolicyAreOpenOnlyInDevMode() throws {
        let policies = [policy(allow: "auth.userId != null")]
        let prod = try engine(policies, dev: false, actions: ["go"])
        let dev = try engine(policies, dev: true, actions: ["go"])
        #expect(prod.unprotectedEntities == ["Open"])
        #expect(prod.unprotectedActions == ["go"])
        for op in PolicyEngine.Operation.allCases {
            #expect(!prod.check(op, entity: "Open", PolicyInput(auth: user())))
            #expect(dev.check(op, entity: "Open", PolicyInput(auth: .anonymous)))
            #expect(!prod.check(op, entity: "Unknown", PolicyInput(auth: user())))
        }
        #expect(prod.readGate(entity: "Open", auth: user()) == .denyAll)
        #expect(dev.readGate(entity: "Open", auth: .anonymous) == .allowAll)
        #expect(!prod.checkAction("go", auth: user(), input: nil))
        #expect(dev.checkAction("go", auth: .anonymous, input: nil))
        // The protected entity follows its policy in both modes.
        #expect(!dev.check(.read, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(prod.check(.read, entity: "Note", PolicyInput(auth: user())))
        #expect(try engine([], dev: false).unprotectedEntities == ["Note", "Open"])
    }

    @Test func fallbackChain() throws {
        let e = try engine([policy(allow: #"auth.hasRole("a")"#, update: #"auth.hasRole("u")"#,
                                   write: #"auth.hasRole("w")"#)])
        func allowed(_ role: String) -> [PolicyEngine.Operation] {
            PolicyEngine.Operation.allCases.filter { e.check($0, entity: "Note", PolicyInput(auth: user(roles: [role]))) }
        }
        #expect(allowed("a") == [.read])                 // read → allow
        #expect(allowed("w") == [.insert, .delete])      // read never falls back to allowWrite
        #expect(allowed("u") == [.update])

        let specific = try engine([policy(allow: "false", read: "true", insert: "true", update: "true",
                                          delete: "true", write: "false")])
        for op in PolicyEngine.Operation.allCases {
            #expect(specific.check(op, entity: "Note", PolicyInput(auth: user())))
        }

        // An explicitly empty key counts as absent and falls through.
        let empty = try engine([policy(allow: "auth.userId != null", read: "", insert: "", write: "")])
        #expect(empty.check(.read, entity: "Note", PolicyInput(auth: user())))
        #expect(!empty.check(.read, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(!empty.check(.insert, entity: "Note", PolicyInput(auth: .anonymous)))
    }

    @Test func everyPolicyMustAllow() throws {
        let e = try engine([
            policy("signed_in", read: "auth.userId != null", write: "auth.userId != null"),
            policy("own", read: "data.ownerId == auth.userId", delete: "existing.ownerId == auth.userId"),
            policy("other", entity: "Open", allow: "false"),
        ])
        let mine: JSONValue = ["ownerId": "u1"]
        let theirs: JSONValue = ["ownerId": "u2"]
        #expect(e.check(.read, entity: "Note", PolicyInput(auth: user("u1"), data: mine)))
        #expect(!e.check(.read, entity: "Note", PolicyInput(auth: user("u1"), data: theirs)))
        #expect(!e.check(.read, entity: "Note", PolicyInput(auth: .anonymous, data: ["ownerId": nil])))
        #expect(e.check(.delete, entity: "Note", PolicyInput(auth: user("u1"), existing: mine)))
        #expect(!e.check(.delete, entity: "Note", PolicyInput(auth: user("u1"), existing: theirs)))
        // "own" says nothing about insert/update, so "signed_in" alone decides.
        #expect(e.check(.insert, entity: "Note", PolicyInput(auth: user("u1"), data: theirs)))
        #expect(!e.check(.update, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(!e.check(.read, entity: "Open", PolicyInput(auth: user("u1"))))
    }

    @Test func operationsNoPolicyMentionsAreAdminOnlyOutsideDev() throws {
        // Pylon left them open; we fail closed (open only in --dev).
        let e = try engine([policy(read: "auth.userId != null")])
        #expect(!e.check(.insert, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(!e.check(.delete, entity: "Note", PolicyInput(auth: user("u1"))))
        #expect(e.check(.delete, entity: "Note", PolicyInput(auth: .admin)))
        let devEngine = try engine([policy(read: "auth.userId != null")], dev: true)
        #expect(devEngine.check(.insert, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(!e.check(.read, entity: "Note", PolicyInput(auth: .anonymous)))
        #expect(e.unguardedOperations.count == 1)
        #expect(e.unguardedOperations.first?.entity == "Note")
        #expect(e.unguardedOperations.first?.operations == [.insert, .update, .delete])
        #expect(try engine([policy(allow: "true")]).unguardedOperations.isEmpty)
    }

    @Test func updateSeesIncomingAndExisting() throws {
        let e = try engine([policy(update: "existing.ownerId == auth.userId && data.ownerId == existing.ownerId",
                                   write: "auth.userId != null")])
        let stored: JSONValue = ["ownerId": "u1", "title": "a"]
        #expect(e.check(.update, entity: "Note", PolicyInput(auth: user("u1"), data: ["ownerId": "u1"], existing: stored)))
        #expect(!e.check(.update, entity: "Note", PolicyInput(auth: user("u1"), data: ["ownerId": "u2"], existing: stored)))
        #expect(!e.check(.update, entity: "Note", PolicyInput(auth: user("u2"), data: ["ownerId": "u1"], existing: stored)))
    }

    @Test func actionPoliciesUseAllowOnly() throws {
        let e = try engine([
            policy("limit", entity: nil, action: "refund", allow: "auth.userId != null && input.amount <= 100",
                   read: "false", write: "false"),
            policy("both", entity: "Note", action: "refund", allow: #"!(input.reason in ["fraud"])"#),
            policy("empty", entity: nil, action: "refund", read: "false"),
        ], actions: ["refund", "ping"])
        #expect(e.checkAction("refund", auth: user(), input: ["amount": 40, "reason": "late"]))
        #expect(!e.checkAction("refund", auth: user(), input: ["amount": 400]))
        #expect(!e.checkAction("refund", auth: user(), input: ["amount": 40, "reason": "fraud"]))
        #expect(!e.checkAction("refund", auth: .anonymous, input: ["amount": 1]))
        #expect(!e.checkAction("refund", auth: user(), input: nil))
        #expect(e.unprotectedActions == ["ping"])
        // "both" also guards the entity through `allow`.
        #expect(e.check(.read, entity: "Note", PolicyInput(auth: user())))
        #expect(e.checkAction("anything", auth: user(), input: nil) == false)
    }

    @Test func emailRules() throws {
        let e = try engine([policy(allow: #"auth.email == "boss@x.io""#)])
        var boss = user(), intern = user()
        boss.email = "boss@x.io"
        intern.email = "intern@x.io"
        #expect(e.check(.read, entity: "Note", PolicyInput(auth: boss)))
        #expect(!e.check(.read, entity: "Note", PolicyInput(auth: intern)))
        #expect(e.readGate(entity: "Note", auth: boss) == .allowAll)
        #expect(e.readGate(entity: "Note", auth: user()) == .denyAll)
    }

    @Test func readGateClassification() throws {
        func gate(_ rules: [Policy], _ auth: AuthContext) throws -> PolicyEngine.ReadGate {
            try engine(rules).readGate(entity: "Note", auth: auth)
        }
        let signedIn = [policy(read: "auth.userId != null")]
        #expect(try gate(signedIn, .anonymous) == .denyAll)
        #expect(try gate(signedIn, user()) == .allowAll)
        #expect(try gate([policy(read: "data.ownerId == auth.userId")], user()) == .perRow)
        #expect(try gate([policy(read: "data.ownerId == auth.userId")], .anonymous) == .perRow)
        #expect(try gate([policy(allow: "existing.x == 1")], user()) == .perRow)
        let mixed = [policy(read: "auth.userId != null && data.ownerId == auth.userId")]
        #expect(try gate(mixed, .anonymous) == .denyAll)
        #expect(try gate(mixed, user()) == .perRow)
        let modOrOwner = [policy(read: #"auth.hasRole("mod") || data.ownerId == auth.userId"#)]
        #expect(try gate(modOrOwner, user(roles: ["mod"])) == .allowAll)
        #expect(try gate(modOrOwner, user()) == .perRow)
        #expect(try gate([policy(read: "!(data.public == true) && false")], user()) == .denyAll)
        let two = [policy("a", read: "data.ownerId == auth.userId"), policy("b", read: #"auth.hasRole("x")"#)]
        #expect(try gate(two, user()) == .denyAll)
        #expect(try gate(two, user(roles: ["x"])) == .perRow)
        #expect(try gate([policy(write: "false")], .anonymous) == .denyAll, "no read rule at all: admin-only outside dev")
        #expect(try gate([policy(read: "input.x == null")], .anonymous) == .allowAll)
    }

    @Test func parseErrorsFailTheLoadWithAPath() throws {
        let text = #"""
            {"manifest_version": 1, "name": "t", "version": "1",
             "entities": [{"name": "Note", "fields": []}],
             "policies": [
               {"name": "a", "entity": "Note", "allow": "true"},
               {"name": "b", "entity": "Note", "allowWrite": "auth.userId != null"},
               {"name": "notes_rw", "entity": "Note", "allowRead": "auth.userId == (data.x"}
             ]}
            """#
        let m = try Manifest.decode(Array(text.utf8))
        let e = engineError(m)
        #expect(e?.code == "POLICY_PARSE_ERROR")
        #expect(e?.path == "$.policies[2](notes_rw).allowRead")
        #expect(e?.message.contains("at position 22") == true)
        #expect(e?.message.contains("`auth.userId == (data.x`") == true)
        #expect(e?.message.contains("expected ')'") == true)

        // Shadowed keys are compiled too; so are entity keys on action-only policies.
        #expect(engineError(manifest([policy(read: "true", insert: "true", update: "true", delete: "true",
                                              write: "data.x ==")]))?.path == "$.policies[0](p).allowWrite")
        #expect(engineError(manifest([policy(entity: nil, action: "go", allow: "true", read: "!")],
                                     actions: ["go"]))?.path == "$.policies[0](p).allowRead")
        #expect(engineError(manifest([policy("", allow: "1 +")]))?.path == "$.policies[0].allow")
        // Whitespace is not empty: it is an expression with nothing in it.
        #expect(engineError(manifest([policy(read: " ")]))?.code == "POLICY_PARSE_ERROR")
    }
}

// MARK: - Property test

/// SplitMix64: small, seedable, identical on every platform (also used by PolicySQLTests).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private struct PolicyFuzzer {
    var rng: SeededGenerator

    static let paths = [
        "auth.userId", "auth.user_id", "auth.isAdmin", "auth.is_admin", "auth.tenantId", "auth.email",
        "auth.roles", "auth.isGuest", "data.a", "data.b.c", "data.n", "data.flag", "data.tags", "data",
        "existing.a", "existing.n", "existing.flag", "input.x", "nope.x", "auth.isAdmin.foo", "data..a",
    ]
    static let literals = [
        #""x""#, "'y'", #""""#, "5", "-3", "2.5", "0", "-0.5", "true", "false", "null", #"["x", 5]"#, "[]",
        "[data.a, auth.userId]", #""é\n""#, "9223372036854775807",
    ]
    static let calls = [#"auth.hasRole("r1")"#, #"auth.hasAnyRole("r1", "r2")"#]
    static let comparisons = ["==", "!=", "<", "<=", ">", ">=", "in"]
    static let alphabet: [Character] = Array("|&=!<>()[],-\"'\\. 0123456789azAZ_\n\t#+é世")
    static let strings: [JSONValue] = ["x", "y", "", "r1", "é"]

    mutating func int(_ n: Int) -> Int { Int.random(in: 0..<n, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(items.count)] }

    mutating func value() -> String {
        switch int(3) {
        case 0: return pick(Self.paths)
        case 1: return pick(Self.literals)
        default: return chance(0.5) ? pick(Self.calls) : pick(Self.paths)
        }
    }

    mutating func expression(_ budget: Int) -> String {
        if budget <= 0 || chance(0.3) {
            return chance(0.6) ? "\(value()) \(pick(Self.comparisons)) \(value())" : value()
        }
        switch int(5) {
        case 0: return "\(expression(budget - 1)) && \(expression(budget - 1))"
        case 1: return "\(expression(budget - 1)) || \(expression(budget - 1))"
        case 2: return "!\(chance(0.5) ? "(\(expression(budget - 1)))" : value())"
        case 3: return "(\(expression(budget - 1)))"
        default: return "\(value()) \(pick(Self.comparisons)) (\(expression(budget - 1)))"
        }
    }

    mutating func mutate(_ s: String) -> String {
        var chars = Array(s)
        for _ in 0..<(1 + int(3)) {
            switch int(5) {
            case 0 where !chars.isEmpty: chars.remove(at: int(chars.count))
            case 1: chars.insert(pick(Self.alphabet), at: int(chars.count + 1))
            case 2 where chars.count > 1:
                let i = int(chars.count - 1)
                chars.swapAt(i, i + 1)
            case 3 where !chars.isEmpty: chars = Array(chars.prefix(int(chars.count)))
            default:
                if !chars.isEmpty { chars[int(chars.count)] = pick(Self.alphabet) }
            }
        }
        return String(chars)
    }

    mutating func candidate(_ n: Int) -> String {
        switch n % 10 {
        case 0: return String((0..<int(30)).map { _ in pick(Self.alphabet) })
        case 1:
            let depth = int(90)
            let open = chance(0.5) ? "(" : "!("
            return String(repeating: open, count: depth) + expression(2) + String(repeating: ")", count: depth)
        case 2, 3, 4: return expression(4)
        default: return mutate(expression(4))
        }
    }

    mutating func json(_ depth: Int) -> JSONValue {
        switch int(depth > 0 ? 8 : 6) {
        case 0: return .null
        case 1: return .bool(chance(0.5))
        case 2: return .int(Int64(int(11)) - 5)
        case 3: return .double(Double(int(11)) / 2 - 2.5)
        case 4, 5: return pick(Self.strings)
        case 6: return .array((0..<int(4)).map { _ in json(depth - 1) })
        default: return row(depth - 1)
        }
    }

    mutating func row(_ depth: Int = 2) -> JSONValue {
        var pairs: [(String, JSONValue)] = []
        for key in ["a", "b", "n", "flag", "tags", "x", ""] where chance(0.6) {
            pairs.append((key, json(depth)))
        }
        return .object(pairs)
    }

    mutating func input() -> PolicyInput {
        let roles = ["r1", "r2", "admin"].filter { _ in chance(0.3) }
        let auth = AuthContext(userID: pick([nil, "u1", "x"]), isAdmin: chance(0.1), isGuest: chance(0.2),
                               roles: roles, tenantID: pick([nil, "t1", "x"]), email: pick([nil, "x", "a@b.io"]))
        return PolicyInput(auth: auth, data: chance(0.8) ? row() : nil,
                           existing: chance(0.5) ? row() : nil, input: chance(0.5) ? row() : nil)
    }
}

@Suite("Policy property test")
struct PolicyPropertyTests {
    @Test func randomAndMutatedPoliciesNeverCrash() throws {
        var fuzz = PolicyFuzzer(rng: SeededGenerator(state: 0x5EED_2024))
        var parsedCount = 0
        var rejectedCount = 0
        var gateVerdicts = 0
        for n in 0..<5_000 {
            let source = fuzz.candidate(n)
            let parsed: PolicyExpression?
            do {
                parsed = try PolicyExpression(source)
                parsedCount += 1
            } catch {
                parsed = nil
                rejectedCount += 1
                #expect(error.position >= 0 && error.position <= source.unicodeScalars.count, "\(source)")
                #expect(!error.message.isEmpty)
            }

            // The engine accepts exactly what parses ("" is an absent rule, not an error).
            let m = manifest([policy("fz", read: source, write: source)], entities: ["Note"])
            let engine: PolicyEngine
            do {
                engine = try PolicyEngine(manifest: m, dev: false)
                #expect(parsed != nil || source.isEmpty, "\(source) loaded but does not parse")
            } catch {
                #expect(parsed == nil, "\(source) parses but failed to load")
                #expect(error.code == "POLICY_PARSE_ERROR")
                #expect(error.path == "$.policies[0](fz).allowRead")
                continue
            }
            guard let parsed else { continue }

            for _ in 0..<4 {
                var input = fuzz.input()
                let result = parsed.evaluate(input)
                #expect(result == parsed.evaluate(input), "evaluation must be deterministic: \(source)")
                #expect(engine.check(.read, entity: "Note", input) == (input.auth.isAdmin || result))
                #expect(engine.check(.insert, entity: "Note", input) == (input.auth.isAdmin || result))

                // A row-independent verdict must agree with every per-row check.
                input.input = nil
                let perRowResult = input.auth.isAdmin || parsed.evaluate(input)
                switch engine.readGate(entity: "Note", auth: input.auth) {
                case .allowAll:
                    gateVerdicts += 1
                    #expect(perRowResult, "readGate allowAll but a row is denied: \(source)")
                case .denyAll:
                    gateVerdicts += 1
                    #expect(!perRowResult, "readGate denyAll but a row is allowed: \(source)")
                case .perRow:
                    #expect(parsed.readsRow, "perRow for a rule that never reads the row: \(source)")
                }
            }
        }
        // The corpus must exercise both sides, or the test proves little.
        #expect(parsedCount > 1_500)
        #expect(rejectedCount > 1_500)
        #expect(gateVerdicts > 1_000)
    }
}
