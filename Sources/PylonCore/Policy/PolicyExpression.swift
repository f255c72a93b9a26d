import PylonJSON

/// What a policy expression can see (pylon-core.md §4.2, extended per DESIGN.md §5).
///
/// `data` is the incoming values on insert/update, or the row on read; `existing` is the
/// stored row on update/delete; `input` is an action's input. A root that is absent reads as
/// `null` at every path below it.
public struct PolicyInput: Sendable {
    public var auth: AuthContext
    public var data: JSONValue?
    public var existing: JSONValue?
    public var input: JSONValue?

    public init(auth: AuthContext, data: JSONValue? = nil, existing: JSONValue? = nil, input: JSONValue? = nil) {
        self.auth = auth
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
