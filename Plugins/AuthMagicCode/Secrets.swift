import Crypto
import Foundation
import PylonJSON

/// One-time secrets and the state the host keeps for them (`pylon_auth_code_v1`).
///
/// A secret is never stored: the state holds HMAC-SHA256(key: a fresh 16-byte salt, the
/// secret), the salt, when it was issued and lapses, the wrong attempts so far and the
/// limit. A code is `codeDigits` decimal digits drawn uniformly from the system CSPRNG; a
/// link token is 32 CSPRNG bytes in base64url (43 characters), and its lookup key is the hex
/// SHA-256 of the token, so the host finds the record from the token alone.
struct Secrets {
    let config: CodeConfig

    /// The state the host stores, decoded.
    struct State {
        var kind: Int32
        var hash: String
        var salt: String
        var issuedAt: Int64
        var expiresAt: Int64
        var attempts: Int64
        var maxAttempts: Int64

        var json: JSONValue {
            .object([("v", 1), ("k", .int(Int64(kind))), ("h", .string(hash)), ("s", .string(salt)),
                     ("i", .int(issuedAt)), ("e", .int(expiresAt)), ("a", .int(attempts)), ("m", .int(maxAttempts))])
        }

        var text: String { JSONWriter.string(json) }

        /// Nil for anything that is not a state this plugin wrote.
        init?(_ text: String) {
            guard !text.isEmpty, text.utf8.count <= 1024, let v = try? JSONParser.parse(text), v["v"]?.intValue == 1,
                  let k = v["k"]?.intValue, let h = v["h"]?.stringValue, let s = v["s"]?.stringValue,
                  let i = v["i"]?.intValue, let e = v["e"]?.intValue, let a = v["a"]?.intValue, let m = v["m"]?.intValue,
                  h.utf8.count == 64, s.utf8.count == 32 else { return nil }
            self.init(kind: Int32(truncatingIfNeeded: k), hash: h, salt: s, issuedAt: i, expiresAt: e, attempts: a, maxAttempts: m)
        }

        init(kind: Int32, hash: String, salt: String, issuedAt: Int64, expiresAt: Int64, attempts: Int64, maxAttempts: Int64) {
            self.kind = kind
            self.hash = hash
            self.salt = salt
            self.issuedAt = issuedAt
            self.expiresAt = expiresAt
            self.attempts = attempts
            self.maxAttempts = maxAttempts
        }
    }

    static let codeKind: Int32 = 1
    static let linkKind: Int32 = 2
    /// Longest presented secret that is read; anything longer cannot match.
    static let maxPresented = 256

    /// `issue`'s result document.
    func issue(kind: Int32, purpose: String, prior: String, now: Int64) -> JSONValue {
        if kind == Self.codeKind, config.cooldown > 0, let old = State(prior), old.kind == kind, now < old.expiresAt {
            let age = now - old.issuedAt
            if age >= 0 && age < config.cooldown {
                return .object([("issued", false), ("retry_after", .int(config.cooldown - age))])
            }
        }
        let secret = kind == Self.linkKind ? Self.linkToken() : code()
        let salt = Self.randomBytes(16)
        let state = State(kind: kind, hash: Self.mac(secret, salt: salt), salt: Self.hex(salt), issuedAt: now,
                          expiresAt: now + lifetime(kind: kind, purpose: purpose), attempts: 0,
                          maxAttempts: kind == Self.linkKind ? 1 : config.maxAttempts)
        return .object([("issued", true), ("secret", .string(secret)), ("state", .string(state.text)),
                        ("expires_at", .int(state.expiresAt)), ("key", .string(kind == Self.linkKind ? Self.key(secret) : ""))])
    }

    /// `check`'s result document: the verdict and the state to keep (null: delete it).
    func check(state text: String, presented: [UInt8], now: Int64) -> JSONValue {
        func verdict(_ v: String, _ state: State?) -> JSONValue {
            .object([("verdict", .string(v)), ("state", state.map { .string($0.text) } ?? .null)])
        }
        guard var state = State(text), let salt = Self.unhex(state.salt) else { return verdict("invalid", nil) }
        if now >= state.expiresAt { return verdict("expired", nil) }
        if state.attempts >= state.maxAttempts { return verdict("exhausted", state) }
        // The MAC is computed and compared whatever was presented, so the time taken says
        // nothing about how close it came.
        let given = Array(presented.prefix(Self.maxPresented))
        let matches = Self.constantTimeEqual(Array(Self.mac(given, salt: salt).utf8), Array(state.hash.utf8))
            && presented.count <= Self.maxPresented
        if matches { return verdict("accepted", nil) }
        state.attempts += 1
        return verdict(state.attempts >= state.maxAttempts ? "exhausted" : "wrong", state)
    }

    /// How long a secret for `purpose` lives.
    func lifetime(kind: Int32, purpose: String) -> Int64 {
        if purpose == "password_reset" { return config.resetTTL }
        if purpose == "email_change" { return config.emailChangeTTL }
        return kind == Self.linkKind ? config.linkTTL : config.codeTTL
    }

    /// A code of `codeDigits` digits, uniform (the generator's `random(in:)` rejects the
    /// biased tail), zero-padded.
    func code() -> String {
        var rng = SystemRandomNumberGenerator()
        var limit: UInt64 = 1
        for _ in 0..<config.codeDigits { limit *= 10 }
        let n = UInt64.random(in: 0..<limit, using: &rng)
        let digits = String(n)
        return String(repeating: "0", count: config.codeDigits - digits.count) + digits
    }

    static func linkToken() -> String { base64url(randomBytes(32)) }

    /// The lookup key of a link token, or nil when `token` cannot be one.
    static func locate(_ token: [UInt8]) -> String? {
        guard token.count == 43, token.allSatisfy(isBase64URL) else { return nil }
        return key(String(decoding: token, as: UTF8.self))
    }

    static func key(_ token: String) -> String { hex(Array(SHA256.hash(data: Array(token.utf8)))) }

    static func mac(_ secret: String, salt: [UInt8]) -> String { mac(Array(secret.utf8), salt: salt) }

    static func mac(_ secret: [UInt8], salt: [UInt8]) -> String {
        hex(Array(HMAC<SHA256>.authenticationCode(for: secret, using: SymmetricKey(data: salt))))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            default: return nil
            }
        }
        var out = [UInt8]()
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func isBase64URL(_ c: UInt8) -> Bool {
        (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 45 || c == 95
    }
}
