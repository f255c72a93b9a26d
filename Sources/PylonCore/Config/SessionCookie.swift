import Foundation

/// The session cookie as the host sends and reads it (pylon-aux.md §1.2 "The cookie"):
/// one place builds every `Set-Cookie` for a session and parses every `Cookie` header, so
/// sign-in, sign-out and every reader agree on the name and attributes.
///
/// Resolved once at start-up from `SessionCookieSettings`, the manifest's app name and
/// `--dev` (`SessionCookieSettings.resolve`).
public struct SessionCookie: Sendable, Equatable, CustomStringConvertible {
    /// `SameSite`, as sent.
    public enum SameSite: String, Sendable, Equatable {
        case strict = "Strict", lax = "Lax", none = "None"
    }

    /// The name every version before the configurable one used. Still read (never written)
    /// when the configured name differs, so a browser signed in before an upgrade stays
    /// signed in; the configured cookie wins when both are sent.
    public static let legacyName = "pylon_session"

    public let name: String
    /// `Domain=`; nil: a host-only cookie.
    public let domain: String?
    public let secure: Bool
    public let sameSite: SameSite

    public init(name: String = legacyName, domain: String? = nil, secure: Bool = true, sameSite: SameSite = .lax) {
        self.name = name
        self.domain = domain
        self.sameSite = sameSite
        // Browsers drop a SameSite=None or `__Secure-`/`__Host-` cookie without Secure.
        self.secure = secure || sameSite == .none || Self.needsSecure(name)
    }

    /// The legacy name when it is read beside the configured one; nil when they are the same.
    public var legacyReadName: String? { name == Self.legacyName ? nil : Self.legacyName }

    /// `Set-Cookie` for a session `token` that lasts `maxAge` seconds.
    public func setting(_ token: String, maxAge: Int64) -> String {
        "\(name)=\(token)\(attributes(domain: domain, maxAge: maxAge))"
    }

    /// `Set-Cookie` that removes the cookie: same name, Path and Domain, `Max-Age=0`.
    public var clearing: String { "\(name)=\(attributes(domain: domain, maxAge: 0))" }

    /// `Set-Cookie` that removes a legacy cookie (set host-only, Path=/, by older hosts);
    /// nil when the configured name is the legacy one (`clearing` does it).
    public var clearingLegacy: String? {
        legacyReadName.map { "\($0)=\(attributes(domain: nil, maxAge: 0))" }
    }

    /// "; Path=/; ..." (nil `maxAge`: none, for the log).
    private func attributes(domain: String?, maxAge: Int64?) -> String {
        "; Path=/" + (domain.map { "; Domain=\($0)" } ?? "") + (maxAge.map { "; Max-Age=\($0)" } ?? "")
            + "; HttpOnly" + (secure ? "; Secure" : "") + "; SameSite=\(sameSite.rawValue)"
    }

    /// For the start-up log: the name and attributes, and whether the legacy name is read.
    public var description: String {
        "\(name) (\(attributes(domain: domain, maxAge: nil).dropFirst(2)))"
            + (legacyReadName.map { "; \($0) is still read from browsers signed in before" } ?? "")
    }

    /// The session token in `Cookie` header values: the configured cookie's first non-empty
    /// value, else the legacy cookie's. The configured one always wins, whatever the order,
    /// so a planted `pylon_session` cannot displace the session the browser really has.
    public func token(inCookieHeaders values: [String]) -> (token: String, legacy: Bool)? {
        if let t = Self.value(named: name, inCookieHeaders: values) { return (t, false) }
        return legacyToken(inCookieHeaders: values).map { ($0, true) }
    }

    /// The legacy cookie's value when the configured name differs and the browser sent it.
    public func legacyToken(inCookieHeaders values: [String]) -> String? {
        legacyReadName.flatMap { Self.value(named: $0, inCookieHeaders: values) }
    }

    /// The first non-empty value of the cookie `name` in `Cookie` header values (any
    /// cookie: the OAuth flow's binding cookie is read with it too).
    public static func value(named name: String, inCookieHeaders values: [String]) -> String? {
        for header in values {
            for part in header.split(separator: ";") {
                guard let eq = part.firstIndex(of: "=") else { continue }
                let value = part[part.index(after: eq)...].trimmingSpaces
                if !value.isEmpty, part[part.startIndex..<eq].trimmingSpaces == name { return String(value) }
            }
        }
        return nil
    }

    /// The default name: `<app>_session`, characters outside `[A-Za-z0-9_-]` as `_`; an
    /// empty app name gives `pylon_session` (Pylon's rule).
    public static func defaultName(forApp app: String) -> String {
        guard !app.isEmpty else { return legacyName }
        let safe = app.unicodeScalars.map { s -> Character in
            switch s.value {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F, 0x2D: Character(s) // 0-9 A-Z a-z _ -
            default: "_"
            }
        }
        return String(safe) + "_session"
    }

    /// The longest session cookie name the host accepts. Browsers count name and value
    /// against one 4 KiB budget, and the name is sent with every request, so a sane name is
    /// short; anything longer is a mistake (or a manifest name never meant for a cookie).
    public static let maxNameLength = 64

    /// A cookie name browsers accept (RFC 6265 §4.1.1: an RFC 2616 token): visible ASCII
    /// without separators, at most `maxNameLength` bytes.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maxNameLength && hasTokenCharacters(name)
    }

    /// Only RFC 2616 token characters: visible ASCII without separators.
    static func hasTokenCharacters(_ name: String) -> Bool {
        let separators: Set<UInt8> = Set(#"()<>@,;:\"/[]?={} "#.utf8)
        return name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !separators.contains($0) }
    }

    /// RFC 6265bis §4.1.3 prefixes: the browser stores such a cookie only with Secure.
    static func needsSecure(_ name: String) -> Bool {
        name.hasPrefix("__Secure-") || name.hasPrefix("__Host-")
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

/// `PYLON_COOKIE_NAME`, `_DOMAIN`, `_SECURE` and `_SAME_SITE` as given, checked at start-up:
/// a value a browser would reject, or one that would break the header, stops the host.
public struct SessionCookieSettings: Sendable, Equatable {
    /// nil: `<app>_session` (`SessionCookie.defaultName`).
    public var name: String?
    public var domain: String?
    /// nil: Secure outside --dev.
    public var secure: Bool?
    public var sameSite: SessionCookie.SameSite = .lax

    public init() {}

    public static func fromEnvironment(_ env: [String: String]) throws(HostError) -> SessionCookieSettings {
        var s = SessionCookieSettings()
        if let n = env["PYLON_COOKIE_NAME"], !n.isEmpty {
            guard SessionCookie.hasTokenCharacters(n) else {
                throw invalid("PYLON_COOKIE_NAME=\(n.prefix(80).debugDescription) is not a valid cookie name; use letters, digits, _ and - (e.g. myapp_session)")
            }
            guard n.utf8.count <= SessionCookie.maxNameLength else {
                throw invalid("PYLON_COOKIE_NAME is \(n.utf8.count) characters long; a session cookie name may have at most \(SessionCookie.maxNameLength): use a short one such as myapp_session")
            }
            s.name = n
        }
        if let d = env["PYLON_COOKIE_DOMAIN"]?.trimmingCharacters(in: .whitespaces), !d.isEmpty {
            guard let domain = Self.domain(d) else {
                throw invalid("PYLON_COOKIE_DOMAIN=\(d.debugDescription) is not a domain name; give one like example.com (no scheme, port or path), or leave it unset for a host-only cookie")
            }
            s.domain = domain
        }
        if let v = env["PYLON_COOKIE_SECURE"]?.trimmingCharacters(in: .whitespaces), !v.isEmpty {
            switch v.lowercased() {
            case "1", "true", "yes", "on": s.secure = true
            case "0", "false", "no", "off": s.secure = false
            default: throw invalid("PYLON_COOKIE_SECURE=\(v.debugDescription) is not true or false (unset: Secure outside --dev)")
            }
        }
        if let v = env["PYLON_COOKIE_SAME_SITE"]?.trimmingCharacters(in: .whitespaces), !v.isEmpty {
            switch v.lowercased() {
            case "strict": s.sameSite = .strict
            case "lax": s.sameSite = .lax
            case "none": s.sameSite = .none
            default: throw invalid("PYLON_COOKIE_SAME_SITE=\(v.debugDescription) is not strict, lax or none")
            }
        }
        if s.name?.hasPrefix("__Host-") == true, let d = s.domain {
            throw invalid("PYLON_COOKIE_NAME=\(s.name!) is a __Host- cookie, which browsers refuse with a Domain; unset PYLON_COOKIE_DOMAIN=\(d) or drop the prefix")
        }
        return s
    }

    /// The cookie for an app called `appName`, in --dev or not. Throws when no name is
    /// configured and the one made from `appName` is too long for a cookie.
    public func resolve(appName: String, dev: Bool) throws(HostError) -> SessionCookie {
        let name = name ?? SessionCookie.defaultName(forApp: appName)
        guard SessionCookie.isValidName(name) else {
            throw Self.invalid("the session cookie name made from the manifest's name (<name>_session) is \(name.utf8.count) characters long, "
                + "over the \(SessionCookie.maxNameLength) a cookie name may have: set PYLON_COOKIE_NAME to a short name (e.g. myapp_session) or shorten the manifest's name")
        }
        return SessionCookie(name: name, domain: domain, secure: secure ?? !dev, sameSite: sameSite)
    }

    /// `d` lowercased without a leading dot (RFC 6265 §5.2.3 ignores it), when it is a
    /// host name: dot-separated labels of letters, digits and inner hyphens.
    static func domain(_ d: String) -> String? {
        var s = d.lowercased()
        if s.hasPrefix(".") { s.removeFirst() }
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        guard !s.isEmpty, s.utf8.count <= 253, labels.allSatisfy({ label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
        }) else { return nil }
        return s
    }

    private static func invalid(_ message: String) -> HostError {
        HostError(status: 500, code: "CONFIG_INVALID", message: message)
    }
}
