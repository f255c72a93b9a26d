import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON
import PylonPluginABI
import PylonPlugins

/// The host's side of `pylon.auth.oauth/1`: asks the plugin for providers, authorization
/// URLs, code exchanges and refreshes, and turns its errors into `HostError`s with the
/// statuses Pylon uses (404 unknown provider, 502 the provider failed).
///
/// Threads: any task; the plugin answers from its own threads.
package final class OAuthService: @unchecked Sendable {
    let table: UnsafePointer<pylon_oauth_v1>
    let instance: OpaquePointer
    /// The host's half: state, account links, users.
    package let accounts: OAuthAccounts

    /// Outside --dev a configured provider needs PYLON_AUTH_ENCRYPTION_KEY (its tokens are
    /// stored encrypted); --dev falls back to a fixed development key, with a warning.
    package init(served: ServedCapability, data: DataService, config: HostConfig, logger: Logger) throws(HostError) {
        table = served.table.assumingMemoryBound(to: pylon_oauth_v1.self)
        instance = served.instance
        var cipher = TokenCipher.development
        if let key = config.authEncryptionKey {
            cipher = try TokenCipher(configured: key)
        }
        accounts = OAuthAccounts(data: data, cipher: cipher)
        let ids = providers().compactMap { $0["provider"]?.stringValue }
        guard !ids.isEmpty, config.authEncryptionKey == nil else {
            logger.info("oauth: providers \(ids.isEmpty ? "none (set PYLON_OAUTH_<ID>_CLIENT_ID and _CLIENT_SECRET)" : ids.joined(separator: ", "))")
            return
        }
        guard config.dev else {
            throw HostError(status: 500, code: "CONFIG_INVALID",
                            message: "OAuth providers are configured (\(ids.joined(separator: ", "))) but PYLON_AUTH_ENCRYPTION_KEY is not set: their tokens are stored encrypted; set it to 32 random bytes (openssl rand -hex 32)")
        }
        logger.warning("oauth: providers \(ids.joined(separator: ", ")); PYLON_AUTH_ENCRYPTION_KEY is not set, so --dev encrypts provider tokens with a fixed development key")
    }

    /// [{"provider", "name", "pkce", "oidc"}], sorted by provider.
    package func providers() -> [JSONValue] {
        let box = Box()
        table.pointee.providers(instance, { ctx, status, json, len, _ in
            guard status == PYLON_OK, let json else { return }
            Unmanaged<Box>.fromOpaque(ctx!).takeUnretainedValue().value = try? JSONParser.parse(Array(UnsafeRawBufferPointer(start: json, count: len)))
        }, Unmanaged.passUnretained(box).toOpaque())
        return withExtendedLifetime(box) { box.value?.arrayValue ?? [] }
    }

    package func authorize(_ request: JSONValue) async throws(HostError) -> JSONValue { try await call(table.pointee.authorize, request) }
    package func exchange(_ request: JSONValue) async throws(HostError) -> JSONValue { try await call(table.pointee.exchange, request) }
    package func refresh(_ request: JSONValue) async throws(HostError) -> JSONValue { try await call(table.pointee.refresh, request) }

    private final class Box: @unchecked Sendable { var value: JSONValue? }

    private final class Pending: @unchecked Sendable {
        let continuation: CheckedContinuation<Result<JSONValue, HostError>, Never>
        init(_ c: CheckedContinuation<Result<JSONValue, HostError>, Never>) { continuation = c }
    }

    private typealias Slot = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int, pylon_oauth_done_fn?, UnsafeMutableRawPointer?) -> Void

    private func call(_ slot: Slot?, _ request: JSONValue) async throws(HostError) -> JSONValue {
        guard let slot else { throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE", message: "the auth.oauth plugin lacks this call; update it") }
        let bytes = JSONWriter.encode(request)
        let result: Result<JSONValue, HostError> = await withCheckedContinuation { cont in
            let pending = Unmanaged.passRetained(Pending(cont)).toOpaque()
            bytes.withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { c in
                    slot(instance, c.baseAddress, c.count, { ctx, status, json, len, err in
                        let p = Unmanaged<Pending>.fromOpaque(ctx!).takeRetainedValue()
                        guard status == PYLON_OK, let json else {
                            p.continuation.resume(returning: .failure(OAuthService.hostError(PluginError(status, err))))
                            return
                        }
                        let value = try? JSONParser.parse(Array(UnsafeRawBufferPointer(start: json, count: len)))
                        p.continuation.resume(returning: value.map { .success($0) }
                            ?? .failure(HostError(status: 502, code: "OAUTH_BAD_REPLY", message: "the auth.oauth plugin answered with something that is not JSON")))
                    }, pending)
                }
            }
        }
        return try result.get()
    }

    static func hostError(_ e: PluginError) -> HostError {
        let code = e.code.isEmpty ? "OAUTH_FAILED" : e.code
        let status: Int = switch code {
        case "PROVIDER_NOT_FOUND": 404
        case "INVALID_REQUEST", "NO_REFRESH_TOKEN": 400
        default: 502
        }
        return HostError(status: status, code: code, message: e.message.isEmpty ? "the auth.oauth plugin failed (status \(e.status))" : e.message)
    }
}
