import PylonJSON

/// Parses the tokens of a policy expression into its `PolicyNode` tree (precedence:
/// `||` < `&&` < comparison < `!`), with the position of every error.
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
