/// The tokens of a policy expression: punctuation, literals, paths and names.
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
