import CCurl
import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The AuthOAuth plugin: `pylon.auth.oauth/1`, the conversation with OAuth 2 / OpenID
/// Connect providers (see `OAuthEngine`). Configured from the environment
/// (`PYLON_OAUTH_<ID>_CLIENT_ID`, `_CLIENT_SECRET`, `_REDIRECT`, `_SCOPES`, `_TENANT`,
/// `_OIDC_ISSUER`) and the manifest's `plugins["auth.oauth"]` object, which wins.
final class OAuthInstance {
    let engine: OAuthEngine
    init(engine: OAuthEngine) { self.engine = engine }
}

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.auth.oauth", version: "0.1.0",
    description: "OAuth 2 / OpenID Connect sign-in: provider presets, OIDC discovery, PKCE, id_token verification against JWKS",
    capabilities: [PYLON_CAP_AUTH_OAUTH],
    create: oauthCreate, destroy: oauthDestroy, getInterface: oauthGetInterface)

nonisolated(unsafe) private let oauthTable: UnsafeMutablePointer<pylon_oauth_v1> = {
    let t = UnsafeMutablePointer<pylon_oauth_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_oauth_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_oauth_v1>.size)
    t.pointee.providers = oauthProviders
    t.pointee.authorize = { p, json, len, done, ctx in start(p, json, len, done, ctx, OAuthEngine.authorize) }
    t.pointee.exchange = { p, json, len, done, ctx in start(p, json, len, done, ctx, OAuthEngine.exchange) }
    t.pointee.refresh = { p, json, len, done, ctx in start(p, json, len, done, ctx, OAuthEngine.refresh) }
    return t
}()

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

private func oauthCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { _, bytes -> Result<OAuthInstance, StoreFailure> in
        guard let cfg = configObject(bytes) else {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.auth.oauth: the config is not a JSON object"))
        }
        guard pylon_curl_global_once() != 0 else { return .failure(StoreFailure(PYLON_ERR_GENERIC, "CURL_INIT_FAILED", "pylon.auth.oauth: libcurl could not start")) }
        do throws(ProviderRegistry.Problem) {
            let registry = try ProviderRegistry.load(env: ProcessInfo.processInfo.environment, config: cfg)
            return .success(OAuthInstance(engine: OAuthEngine(registry: registry)))
        } catch {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.auth.oauth: \(error.message)"))
        }
    }
}

private func oauthDestroy(_ p: OpaquePointer?) {
    guard let p else { return }
    _ = Handle.release(p, as: OAuthInstance.self)
}

private func oauthGetInterface(_ p: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_AUTH_OAUTH) == 0 else { return nil }
    return UnsafeRawPointer(oauthTable)
}

private func oauthProviders(_ p: OpaquePointer?, _ done: pylon_oauth_done_fn?, _ ctx: UnsafeMutableRawPointer?) {
    let list = p.map { Handle.borrow($0, as: OAuthInstance.self).engine.providers() } ?? .array([])
    answer(.success(list), done, ctx)
}

/// Copies the request, runs `work` on a task and answers through `done` exactly once.
private func start(_ p: OpaquePointer?, _ json: UnsafePointer<CChar>?, _ len: Int, _ done: pylon_oauth_done_fn?,
                   _ ctx: UnsafeMutableRawPointer?, _ work: @escaping @Sendable (OAuthEngine) -> (JSONValue) async throws(OAuthError) -> JSONValue) {
    guard let p else {
        answer(.failure(.bad("called without an instance")), done, ctx)
        return
    }
    let engine = Handle.borrow(p, as: OAuthInstance.self).engine
    let bytes = json.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    guard let request = try? JSONParser.parse(bytes), case .object = request else {
        answer(.failure(.bad("the request is not a JSON object")), done, ctx)
        return
    }
    let context = UInt(bitPattern: ctx)
    Task {
        let result: Result<JSONValue, OAuthError>
        do throws(OAuthError) {
            result = .success(try await work(engine)(request))
        } catch {
            result = .failure(error)
        }
        answer(result, done, UnsafeMutableRawPointer(bitPattern: context))
    }
}

private func answer(_ result: Result<JSONValue, OAuthError>, _ done: pylon_oauth_done_fn?, _ ctx: UnsafeMutableRawPointer?) {
    guard let done else { return }
    switch result {
    case .success(let v):
        let bytes = JSONWriter.encode(v)
        bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { done(ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
    case .failure(let e):
        withError(e.status, e.code, e.message) { done(ctx, e.status, nil, 0, $0) }
    }
}
