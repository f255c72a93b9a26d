/// What a policy expression can see (pylon-core.md §4.2, extended per DESIGN.md §5).
///
/// `data` is the incoming values on insert/update, or the row on read; `existing` is the
/// stored row on update/delete; `input` is an action's input. A root that is absent reads as
/// `null` at every path below it.
public struct PolicyInput: Sendable {
    public var auth: AuthContext
    /// `auth.email`. Kept here until `AuthContext` carries it.
    public var authEmail: String?
    public var data: JSONValue?
    public var existing: JSONValue?
    public var input: JSONValue?

    public init(auth: AuthContext, authEmail: String? = nil, data: JSONValue? = nil,
                existing: JSONValue? = nil, input: JSONValue? = nil) {
        self.auth = auth
        self.authEmail = authEmail
        self.data = data
        self.existing = existing
        self.input = input
    }
}

/// A policy expression that does not parse. `position` is a 0-based offset in Unicode
/// scalars (the same as the character offset for ASCII text); at the end of the text it
/// equals the text's length.
public struct PolicyParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var position: Int

    public init(message: String, position: Int) {
        self.message = message
        self.position = position
    }

    public var description: String { "at position \(position): \(message)" }

    /// The expression with a caret under the offending position, for terminal output.
    public func annotated(_ source: String) -> String {
        let line = String(String.UnicodeScalarView(source.unicodeScalars.map { $0 == "\n" || $0 == "\r" || $0 == "\t" ? " " : $0 }))
        return line + "\n" + String(repeating: " ", count: position) + "^ " + message
    }
}

/// One parsed and compiled policy expression (pylon-core.md §4, superset per DESIGN.md §5).
///
/// Grammar (Pylon's, plus numbers, ordering, `in`, arrays):
/// ```
/// expr       := and ( "||" and )*
/// and        := comparison ( "&&" comparison )*
/// comparison := unary ( ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") unary )?   -- one, non-associative
/// unary      := "!" unary | "-" NUMBER | primary
/// primary    := "true" | "false" | "null" | STRING | NUMBER
///             | "(" expr ")" | "[" [ expr ("," expr)* ] "]"
///             | IDENT "(" STRING ("," STRING)* ")"        -- auth.hasRole / auth.hasAnyRole
///             | IDENT                                     -- path
/// NUMBER     := [0-9]+ ( "." [0-9]+ )?
/// IDENT      := [A-Za-z_][A-Za-z0-9_.]*                   -- dots are part of the word
/// ```
/// Parsing happens once, in `init`; the result is a tree of closures, so a check never
/// re-parses. Evaluation is total: every expression yields a value for every input, so
/// there is no runtime error path (unknown paths read as `null`, ill-typed comparisons are
/// `false`).
public struct PolicyExpression: Sendable, CustomStringConvertible {
    /// Deepest nesting of `(`, `[` and `!` accepted.
    public static let maxDepth = 64

    public let source: String
    let root: PolicyNode
    private let condition: PolicyCompiler.Condition
    private let gateCondition: PolicyCompiler.Gate

    public init(_ source: String) throws(PolicyParseError) {
        self.source = source
        let tokens = try PolicyTokenizer.tokenize(Array(source.unicodeScalars))
        var parser = PolicyParser(tokens: tokens)
        root = try parser.parseAll()
        condition = PolicyCompiler.condition(root)
        gateCondition = PolicyCompiler.gate(root)
    }

    public var description: String { source }

    /// Whether the result can depend on `data.*` or `existing.*`.
    public var readsRow: Bool { root.readsRow }

    /// Allow (`true`) or deny (`false`) for `input`.
    public func evaluate(_ input: PolicyInput) -> Bool { condition(input) }

    /// The result if it is the same for every `data`/`existing` (`input.data`/`existing` are
    /// ignored), else nil. Three-valued (Kleene) logic over the row-dependent parts, so
    /// `auth.userId != null && data.ownerId == auth.userId` is `false` for anonymous callers.
    func rowIndependentResult(_ input: PolicyInput) -> Bool? { gateCondition(input) }
}

// MARK: - AST

/// Where a path points. Unknown roots and unknown `auth` members read as `null` (as in Pylon).
enum PolicyPath: Sendable, Equatable {
    case authUserID, authIsAdmin, authTenantID, authEmail, authRoles, authIsGuest
    case data([String])
    case existing([String])
    case input([String])
    case unknown

    init(_ word: String) {
        let parts = word.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let rest = Array(parts.dropFirst())
        switch parts[0] {
        case "data": self = .data(rest)
        case "existing": self = .existing(rest)
        case "input": self = .input(rest)
        case "auth" where rest.count == 1:
            switch rest[0] {
            case "userId", "user_id": self = .authUserID
            case "isAdmin", "is_admin": self = .authIsAdmin
            case "tenantId", "tenant_id": self = .authTenantID
            case "email": self = .authEmail
            case "roles": self = .authRoles
            case "isGuest", "is_guest": self = .authIsGuest
            default: self = .unknown
            }
        default: self = .unknown
        }
    }
}

enum PolicyComparison: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case contains = "in"
}

indirect enum PolicyNode: Sendable {
    case literal(JSONValue)
    /// An array literal with at least one non-constant element.
    case list([PolicyNode])
    case path(PolicyPath)
    case hasRole(String)
    case hasAnyRole([String])
    case not(PolicyNode)
    case and([PolicyNode])
    case or([PolicyNode])
    case compare(PolicyComparison, PolicyNode, PolicyNode)

    var readsRow: Bool {
        switch self {
        case .literal, .hasRole, .hasAnyRole: return false
        case let .path(p):
            switch p {
            case .data, .existing: return true
            default: return false
            }
        case let .list(items), let .and(items), let .or(items): return items.contains { $0.readsRow }
        case let .not(x): return x.readsRow
        case let .compare(_, l, r): return l.readsRow || r.readsRow
        }
    }
}

// MARK: - Tokenizer

enum PolicyPunct: String, Sendable {
    case or = "||", and = "&&", not = "!", equal = "==", notEqual = "!="
    case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case openParen = "(", closeParen = ")", openBracket = "[", closeBracket = "]", comma = ",", minus = "-"
}

enum PolicyTokenKind: Sendable, Equatable {
    case ident(String)
    case string(String)
    /// The literal's text: digits with an optional fraction.
    case number(String)
    case punct(PolicyPunct)
    case end

    var display: String {
        switch self {
        case let .ident(w): return "'\(w)'"
        case .string: return "a string literal"
        case let .number(n): return "the number \(n)"
        case let .punct(p): return "'\(p.rawValue)'"
        case .end: return "the end of the expression"
        }
    }
}

struct PolicyToken: Sendable {
    var kind: PolicyTokenKind
    var position: Int
}

enum PolicyTokenizer {
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    static func tokenize(_ s: [Unicode.Scalar]) throws(PolicyParseError) -> [PolicyToken] {
        var out: [PolicyToken] = []
        var i = 0
        func fail(_ message: String, _ at: Int) -> PolicyParseError {
            PolicyParseError(message: message, position: at)
        }
        func next(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }

        while i < s.count {
            let c = s[i]
            let start = i
            switch c {
            case " ", "\t", "\r", "\n":
                i += 1
                continue
            case "|", "&":
                guard next(i + 1) == c else {
                    throw fail("expected '\(c)\(c)'; a single '\(c)' is not an operator", start)
                }
                out.append(PolicyToken(kind: .punct(c == "|" ? .or : .and), position: start))
                i += 2
            case "=":
                guard next(i + 1) == "=" else {
                    throw fail("expected '=='; a single '=' is not an operator", start)
                }
                out.append(PolicyToken(kind: .punct(.equal), position: start))
                i += 2
            case "!", "<", ">":
                let withEqual = next(i + 1) == "="
                let p: PolicyPunct
                switch (c, withEqual) {
                case ("!", false): p = .not
                case ("!", true): p = .notEqual
                case ("<", false): p = .less
                case ("<", true): p = .lessOrEqual
                case (">", false): p = .greater
                default: p = .greaterOrEqual
                }
                out.append(PolicyToken(kind: .punct(p), position: start))
                i += withEqual ? 2 : 1
            case "(", ")", "[", "]", ",", "-":
                out.append(PolicyToken(kind: .punct(PolicyPunct(rawValue: String(c))!), position: start))
                i += 1
            case "\"", "'":
                var text = String.UnicodeScalarView()
                i += 1
                var closed = false
                while i < s.count {
                    let d = s[i]
                    if d == c {
                        closed = true
                        i += 1
                        break
                    }
                    if d == "\\" {
                        guard let e = next(i + 1) else { break }
                        switch e {
                        case "\\": text.append("\\")
                        case "\"": text.append("\"")
                        case "'": text.append("'")
                        case "n": text.append("\n")
                        case "r": text.append("\r")
                        case "t": text.append("\t")
                        case "0": text.append("\0")
                        default:
                            throw fail("unknown escape '\\\(e)' in a string literal; the escapes are \\\\ \\\" \\' \\n \\r \\t \\0", i)
                        }
                        i += 2
                        continue
                    }
                    text.append(d)
                    i += 1
                }
                guard closed else {
                    throw fail("string literal starting here is not closed; end it with \(c)", start)
                }
                out.append(PolicyToken(kind: .string(String(text)), position: start))
            default:
                if isDigit(c) {
                    while let d = next(i), isDigit(d) { i += 1 }
                    if next(i) == ".", let d = next(i + 1), isDigit(d) {
                        i += 1
                        while let d = next(i), isDigit(d) { i += 1 }
                    }
                    if let d = next(i), isLetter(d) || isDigit(d) || d == "." {
                        throw fail("malformed number; write digits with an optional fraction, like 5 or 2.5", start)
                    }
                    out.append(PolicyToken(kind: .number(String(String.UnicodeScalarView(s[start..<i]))), position: start))
                } else if isLetter(c) {
                    i += 1
                    while let d = next(i), isLetter(d) || isDigit(d) || d == "." { i += 1 }
                    out.append(PolicyToken(kind: .ident(String(String.UnicodeScalarView(s[start..<i]))), position: start))
                } else {
                    let shown = c.properties.generalCategory == .control || c.value > 0x7E
                        ? "U+" + String(c.value, radix: 16, uppercase: true) : "'\(c)'"
                    throw fail("unexpected character \(shown); expected a path, a literal or an operator", start)
                }
            }
        }
        out.append(PolicyToken(kind: .end, position: s.count))
        return out
    }
}

// MARK: - Parser

struct PolicyParser {
    let tokens: [PolicyToken]
    var index = 0
    var depth = 0

    init(tokens: [PolicyToken]) { self.tokens = tokens }

    var current: PolicyToken { tokens[index] }

    mutating func advance() { if index < tokens.count - 1 { index += 1 } }

    func fail(_ message: String, _ at: Int? = nil) -> PolicyParseError {
        PolicyParseError(message: message, position: at ?? current.position)
    }

    func comparison(_ kind: PolicyTokenKind) -> PolicyComparison? {
        switch kind {
        case .punct(.equal): return .equal
        case .punct(.notEqual): return .notEqual
        case .punct(.less): return .less
        case .punct(.lessOrEqual): return .lessOrEqual
        case .punct(.greater): return .greater
        case .punct(.greaterOrEqual): return .greaterOrEqual
        case .ident("in"): return .contains
        default: return nil
        }
    }

    mutating func enter(_ at: Int) throws(PolicyParseError) {
        depth += 1
        if depth > PolicyExpression.maxDepth {
            throw fail("nesting is deeper than \(PolicyExpression.maxDepth) levels of '(', '[' or '!'; simplify the expression", at)
        }
    }

    mutating func parseAll() throws(PolicyParseError) -> PolicyNode {
        let node = try parseOr()
        guard case .end = current.kind else {
            if comparison(current.kind) != nil {
                throw fail("comparisons cannot be chained; put one comparison in parentheses")
            }
            throw fail("unexpected \(current.kind.display) after a complete expression; expected '&&', '||' or the end")
        }
        return node
    }

    mutating func parseOr() throws(PolicyParseError) -> PolicyNode {
        var items = [try parseAnd()]
        while current.kind == .punct(.or) {
            advance()
            items.append(try parseAnd())
        }
        return items.count == 1 ? items[0] : .or(items)
    }

    mutating func parseAnd() throws(PolicyParseError) -> PolicyNode {
        var items = [try parseComparison()]
        while current.kind == .punct(.and) {
            advance()
            items.append(try parseComparison())
        }
        return items.count == 1 ? items[0] : .and(items)
    }

    mutating func parseComparison() throws(PolicyParseError) -> PolicyNode {
        let left = try parseUnary()
        guard let op = comparison(current.kind) else { return left }
        advance()
        let right = try parseUnary()
        if comparison(current.kind) != nil {
            throw fail("comparisons cannot be chained; put one comparison in parentheses")
        }
        return .compare(op, left, right)
    }

    mutating func parseUnary() throws(PolicyParseError) -> PolicyNode {
        let token = current
        switch token.kind {
        case .punct(.not):
            try enter(token.position)
            advance()
            let operand = try parseUnary()
            depth -= 1
            return .not(operand)
        case .punct(.minus):
            advance()
            guard case let .number(text) = current.kind else {
                throw fail("expected a number after '-' (unary minus applies to number literals only), found \(current.kind.display)")
            }
            advance()
            return .literal(try number("-" + text, token.position))
        default:
            return try parsePrimary()
        }
    }

    func number(_ text: String, _ at: Int) throws(PolicyParseError) -> JSONValue {
        if !text.contains("."), let i = Int64(text) { return .int(i) }
        guard let d = Double(text), d.isFinite else {
            throw fail("number \(text) is out of range", at)
        }
        return .double(d)
    }

    mutating func parsePrimary() throws(PolicyParseError) -> PolicyNode {
        let token = current
        switch token.kind {
        case let .number(text):
            advance()
            return .literal(try number(text, token.position))
        case let .string(s):
            advance()
            return .literal(.string(s))
        case let .ident(word):
            switch word {
            case "true": advance(); return .literal(.bool(true))
            case "false": advance(); return .literal(.bool(false))
            case "null": advance(); return .literal(.null)
            case "in": throw fail("expected a value before 'in', found 'in'")
            default: break
            }
            advance()
            if current.kind == .punct(.openParen) { return try parseCall(word, token.position) }
            return .path(PolicyPath(word))
        case .punct(.openParen):
            try enter(token.position)
            advance()
            let inner = try parseOr()
            guard current.kind == .punct(.closeParen) else {
                if comparison(current.kind) != nil {
                    throw fail("comparisons cannot be chained; put one comparison in parentheses")
                }
                throw fail("expected ')' to close the '(' at position \(token.position), found \(current.kind.display)")
            }
            advance()
            depth -= 1
            return inner
        case .punct(.openBracket):
            try enter(token.position)
            advance()
            var items: [PolicyNode] = []
            if current.kind != .punct(.closeBracket) {
                while true {
                    items.append(try parseOr())
                    if current.kind == .punct(.comma) {
                        advance()
                        continue
                    }
                    guard current.kind == .punct(.closeBracket) else {
                        throw fail("expected ',' or ']' to close the '[' at position \(token.position), found \(current.kind.display)")
                    }
                    break
                }
            }
            advance()
            depth -= 1
            var constants: [JSONValue] = []
            for item in items {
                guard case let .literal(v) = item else { return .list(items) }
                constants.append(v)
            }
            return .literal(.array(constants))
        default:
            throw fail("expected a value (a literal, a path, '(', '[' or '!'), found \(token.kind.display)")
        }
    }

    /// `name(` has been read up to the name; `current` is `(`.
    mutating func parseCall(_ name: String, _ at: Int) throws(PolicyParseError) -> PolicyNode {
        guard name == "auth.hasRole" || name == "auth.hasAnyRole" else {
            throw fail("unknown function '\(name)'; the functions are auth.hasRole(\"role\") and auth.hasAnyRole(\"a\", \"b\", ...)", at)
        }
        advance()
        var args: [String] = []
        if current.kind != .punct(.closeParen) {
            while true {
                guard case let .string(s) = current.kind else {
                    throw fail("\(name) takes string literals as arguments, found \(current.kind.display)")
                }
                args.append(s)
                advance()
                if current.kind == .punct(.comma) {
                    advance()
                    continue
                }
                guard current.kind == .punct(.closeParen) else {
                    throw fail("expected ',' or ')' in the arguments of \(name), found \(current.kind.display)")
                }
                break
            }
        }
        advance()
        if name == "auth.hasRole" {
            guard args.count == 1 else {
                throw fail("auth.hasRole takes exactly one role, found \(args.count); use auth.hasAnyRole for several", at)
            }
            return .hasRole(args[0])
        }
        guard !args.isEmpty else { throw fail("auth.hasAnyRole needs at least one role", at) }
        return .hasAnyRole(args)
    }
}

// MARK: - Values and compilation

/// Value semantics (pylon-core.md §4.3, extended): numbers compare as numbers (ints
/// exactly, `5 == 5.0`), strings by Unicode code point (byte order, like SQLite's BINARY
/// collation, not Swift's canonical equivalence), booleans only with booleans; values of
/// different types are never equal and never ordered.
enum PolicyValues {
    static func truthy(_ v: JSONValue) -> Bool {
        switch v {
        case .null: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0 && !d.isNaN
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return !o.isEmpty
        }
    }

    /// -1, 0, 1; nil when not comparable (NaN).
    static func compareNumbers(_ a: JSONValue, _ b: JSONValue) -> Int? {
        switch (a, b) {
        case let (.int(x), .int(y)): return x < y ? -1 : (x > y ? 1 : 0)
        case let (.double(x), .double(y)):
            if x.isNaN || y.isNaN { return nil }
            return x < y ? -1 : (x > y ? 1 : 0)
        case let (.int(x), .double(y)): return compare(x, y)
        case let (.double(x), .int(y)): return compare(y, x).map { -$0 }
        default: return nil
        }
    }

    /// Exact order of an integer and a double, without rounding the integer.
    static func compare(_ i: Int64, _ d: Double) -> Int? {
        if d.isNaN { return nil }
        if d >= 9_223_372_036_854_775_808.0 { return -1 }
        if d < -9_223_372_036_854_775_808.0 { return 1 }
        let whole = d.rounded(.towardZero)
        let w = Int64(whole)
        if i < w { return -1 }
        if i > w { return 1 }
        let fraction = d - whole
        return fraction > 0 ? -1 : (fraction < 0 ? 1 : 0)
    }

    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case (.int, .int), (.int, .double), (.double, .int), (.double, .double):
            return compareNumbers(a, b) == 0
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.array(x), .array(y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return false }
            return x.allSatisfy { pair in y.contains { $0.0 == pair.0 && equal($0.1, pair.1) } }
        default: return false
        }
    }

    /// -1, 0, 1 for number/number and string/string; nil for anything else.
    static func order(_ a: JSONValue, _ b: JSONValue) -> Int? {
        switch (a, b) {
        case let (.string(x), .string(y)):
            if x.utf8.elementsEqual(y.utf8) { return 0 }
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : 1
        default: return compareNumbers(a, b)
        }
    }

    static func walk(_ root: JSONValue?, _ segments: [String]) -> JSONValue {
        guard var v = root else { return .null }
        for s in segments {
            guard let next = v[s] else { return .null }
            v = next
        }
        return v
    }
}

/// Turns the AST into closures once; checks then only call them.
enum PolicyCompiler {
    typealias Value = @Sendable (PolicyInput) -> JSONValue
    typealias Condition = @Sendable (PolicyInput) -> Bool
    typealias Gate = @Sendable (PolicyInput) -> Bool?

    static func value(_ node: PolicyNode) -> Value {
        switch node {
        case let .literal(v):
            return { _ in v }
        case let .list(items):
            let fs = items.map(value)
            return { input in .array(fs.map { $0(input) }) }
        case let .path(p):
            switch p {
            case .authUserID: return { $0.auth.userID.map { .string($0) } ?? .null }
            case .authIsAdmin: return { .bool($0.auth.isAdmin) }
            case .authTenantID: return { $0.auth.tenantID.map { .string($0) } ?? .null }
            case .authEmail: return { $0.authEmail.map { .string($0) } ?? .null }
            case .authRoles: return { .array($0.auth.roles.map { .string($0) }) }
            case .authIsGuest: return { .bool($0.auth.isGuest) }
            case let .data(segments): return { PolicyValues.walk($0.data, segments) }
            case let .existing(segments): return { PolicyValues.walk($0.existing, segments) }
            case let .input(segments): return { PolicyValues.walk($0.input, segments) }
            case .unknown: return { _ in .null }
            }
        case .hasRole, .hasAnyRole, .not, .and, .or, .compare:
            let c = condition(node)
            return { .bool(c($0)) }
        }
    }

    static func condition(_ node: PolicyNode) -> Condition {
        switch node {
        case let .literal(v):
            let t = PolicyValues.truthy(v)
            return { _ in t }
        case let .list(items):
            let t = !items.isEmpty
            return { _ in t }
        case .path:
            let f = value(node)
            return { PolicyValues.truthy(f($0)) }
        case let .hasRole(role):
            return { $0.auth.isAdmin || $0.auth.roles.contains(role) }
        case let .hasAnyRole(roles):
            return { input in input.auth.isAdmin || input.auth.roles.contains { roles.contains($0) } }
        case let .not(x):
            let c = condition(x)
            return { !c($0) }
        case let .and(items):
            let cs = items.map(condition)
            return { input in
                for c in cs where !c(input) { return false }
                return true
            }
        case let .or(items):
            let cs = items.map(condition)
            return { input in
                for c in cs where c(input) { return true }
                return false
            }
        case let .compare(op, l, r):
            let lf = value(l)
            switch op {
            case .equal:
                let rf = value(r)
                return { PolicyValues.equal(lf($0), rf($0)) }
            case .notEqual:
                let rf = value(r)
                return { !PolicyValues.equal(lf($0), rf($0)) }
            case .less:
                let rf = value(r)
                return { PolicyValues.order(lf($0), rf($0)) == -1 }
            case .lessOrEqual:
                let rf = value(r)
                return { (PolicyValues.order(lf($0), rf($0)) ?? 1) <= 0 }
            case .greater:
                let rf = value(r)
                return { PolicyValues.order(lf($0), rf($0)) == 1 }
            case .greaterOrEqual:
                let rf = value(r)
                return { (PolicyValues.order(lf($0), rf($0)) ?? -1) >= 0 }
            case .contains:
                if case let .literal(.array(elements)) = r {
                    return { input in
                        let x = lf(input)
                        return elements.contains { PolicyValues.equal(x, $0) }
                    }
                }
                let rf = value(r)
                return { input in
                    guard case let .array(elements) = rf(input) else { return false }
                    let x = lf(input)
                    return elements.contains { PolicyValues.equal(x, $0) }
                }
            }
        }
    }

    /// The result when it cannot depend on the row; nil otherwise (Kleene logic).
    static func gate(_ node: PolicyNode) -> Gate {
        if !node.readsRow {
            let c = condition(node)
            return { c($0) }
        }
        switch node {
        case let .not(x):
            let g = gate(x)
            return { g($0).map { !$0 } }
        case let .and(items):
            let gs = items.map(gate)
            return { input in
                var unknown = false
                for g in gs {
                    switch g(input) {
                    case false?: return false
                    case nil: unknown = true
                    case true?: break
                    }
                }
                return unknown ? nil : true
            }
        case let .or(items):
            let gs = items.map(gate)
            return { input in
                var unknown = false
                for g in gs {
                    switch g(input) {
                    case true?: return true
                    case nil: unknown = true
                    case false?: break
                    }
                }
                return unknown ? nil : false
            }
        default:
            return { _ in nil }
        }
    }
}
