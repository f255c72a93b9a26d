#if canImport(Glibc)
import Glibc
#endif
import PylonJSON
import PylonPluginKit

/// The plugin's config: the manifest's `plugins.store` object minus `use`, e.g.
///
///     {"use": "d1", "account_id": "…", "database_id": "…", "api_token_env": "CF_API_TOKEN"}
///
/// `api_token` may be given inline, but `api_token_env` (the name of an environment variable
/// holding the token) keeps the secret out of the manifest. `base_url` defaults to
/// Cloudflare's API. The host also passes `path` (its `--db` setting), which D1 ignores.
struct D1Config {
    static let defaultBaseURL = "https://api.cloudflare.com/client/v4"

    var accountID = ""
    var databaseID = ""
    var apiToken = ""
    var baseURL = defaultBaseURL
    /// A PEM file of CA certificates to verify the server with, instead of the system's
    /// (a private gateway, or the tests' local HTTPS server). Verification is never off.
    var caFile: String?
    var timeoutMs = 30_000
    var connectTimeoutMs = 10_000
    var maxReaders = 4
    /// Largest response accepted, so a broken server cannot exhaust memory.
    var maxResponseBytes = 64 << 20

    /// `{base}/accounts/{account}/d1/database/{database}/query`
    var queryURL: String { "\(baseURL)/accounts/\(accountID)/d1/database/\(databaseID)/query" }

    static let knownKeys: Set<String> = ["account_id", "database_id", "api_token", "api_token_env", "base_url",
                                         "timeout_ms", "connect_timeout_ms", "readers", "ca_file", "path"]

    static func parse(_ bytes: [UInt8]) -> Result<D1Config, ConfigProblem> {
        var c = D1Config()
        if bytes.isEmpty { return .failure(ConfigProblem("the store config is empty; give account_id, database_id and api_token_env (or api_token)")) }
        guard let json = configObject(bytes), case let .object(pairs) = json else {
            return .failure(ConfigProblem("the store config is not a JSON object"))
        }
        for (k, _) in pairs where !knownKeys.contains(k) {
            return .failure(ConfigProblem("unknown key \"\(k)\"; known keys are \(knownKeys.sorted().joined(separator: ", "))"))
        }
        func string(_ key: String) -> Result<String?, ConfigProblem> {
            guard let v = json[key] else { return .success(nil) }
            guard let s = v.stringValue, !s.isEmpty else { return .failure(ConfigProblem("\"\(key)\" must be a non-empty string")) }
            return .success(s)
        }
        func identifier(_ key: String) -> Result<String, ConfigProblem> {
            switch string(key) {
            case let .failure(p): return .failure(p)
            case .success(nil): return .failure(ConfigProblem("\"\(key)\" is required"))
            case let .success(s?):
                // It becomes a URL path segment: letters, digits, '-' and '_' only.
                let ok = s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F }
                return ok ? .success(s) : .failure(ConfigProblem("\"\(key)\" may contain only letters, digits, - and _"))
            }
        }
        func int(_ key: String, _ range: ClosedRange<Int>) -> Result<Int?, ConfigProblem> {
            guard let v = json[key] else { return .success(nil) }
            guard let n = v.intValue, range.contains(Int(n)) else {
                return .failure(ConfigProblem("\"\(key)\" must be an integer in \(range.lowerBound)...\(range.upperBound)"))
            }
            return .success(Int(n))
        }
        switch identifier("account_id") { case let .success(s): c.accountID = s; case let .failure(p): return .failure(p) }
        switch identifier("database_id") { case let .success(s): c.databaseID = s; case let .failure(p): return .failure(p) }
        switch (string("api_token"), string("api_token_env")) {
        case let (.failure(p), _), let (_, .failure(p)): return .failure(p)
        case (.success(_?), .success(_?)): return .failure(ConfigProblem("give api_token or api_token_env, not both"))
        case let (.success(token?), .success(nil)): c.apiToken = token
        case let (.success(nil), .success(name?)):
            guard let v = getenv(name), v.pointee != 0 else {
                return .failure(ConfigProblem("api_token_env names \(name), which is not set or empty in the host's environment"))
            }
            c.apiToken = String(cString: v)
        case (.success(nil), .success(nil)): return .failure(ConfigProblem("api_token_env (or api_token) is required"))
        }
        guard !c.apiToken.utf8.contains(where: { $0 < 0x21 || $0 > 0x7E }) else {
            return .failure(ConfigProblem("the API token contains spaces or control characters"))
        }
        switch string("base_url") {
        case let .failure(p): return .failure(p)
        case let .success(url?):
            guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                return .failure(ConfigProblem("\"base_url\" must start with https:// (or http:// for a local test server)"))
            }
            c.baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        case .success(nil): break
        }
        switch string("ca_file") {
        case let .failure(p): return .failure(p)
        case let .success(path?):
            guard access(path, R_OK) == 0 else { return .failure(ConfigProblem("\"ca_file\" \(path) cannot be read")) }
            c.caFile = path
        case .success(nil): break
        }
        switch int("timeout_ms", 100...600_000) { case let .success(v): if let v { c.timeoutMs = v }; case let .failure(p): return .failure(p) }
        switch int("connect_timeout_ms", 100...600_000) { case let .success(v): if let v { c.connectTimeoutMs = v }; case let .failure(p): return .failure(p) }
        switch int("readers", 1...64) { case let .success(v): if let v { c.maxReaders = v }; case let .failure(p): return .failure(p) }
        return .success(c)
    }
}

struct ConfigProblem: Error {
    var message: String
    init(_ m: String) { message = m }
}
