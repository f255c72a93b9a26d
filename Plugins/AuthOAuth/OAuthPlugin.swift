import CCurl
import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The AuthOAuth plugin: `pylon.auth.oauth/1`, the conversation with OAuth 2 / OpenID
/// Connect providers (see `OAuthEngine`). Configured from the environment
/// (`PYLON_OAUTH_<ID>_CLIENT_ID`, `_CLIENT_SECRET`, `_REDIRECT`, `_SCOPES`, `_TENANT`,
/// `_OIDC_ISSUER`) and the manifest's `plugins["auth.oauth"]` object, which wins.
final class OAuthInstance: @unchecked Sendable {
    let engine: OAuthEngine
    init(engine: OAuthEngine) { self.engine = engine }

    /// A started request's completion (the host's callback and its context).
    struct Completion: @unchecked Sendable {
        let done: pylon_oauth_done_fn
        let ctx: UnsafeMutableRawPointer?
    }

    /// Requests started and not answered yet, and answers being delivered (`lock`). The
    /// host may not be called once `destroy` returns, but a request can wait on a provider
    /// for many seconds: `close` answers the open ones at once and waits only for answers
    /// already on their way; a request that finishes later finds itself gone.
    private let lock = NSCondition()
    private var open: [UInt64: Completion] = [:]
    private var nextID: UInt64 = 0
    private var delivering = 0
    private var closed = false

    /// Registers a request; nil once the instance is closing.
    func begin(_ completion: Completion) -> UInt64? {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return nil }
        nextID += 1
        open[nextID] = completion
        return nextID
    }

    /// Calls `body` with the request's completion unless `close` answered it already.
    func finish(_ id: UInt64, _ body: (Completion) -> Void) {
        lock.lock()
        guard let c = open.removeValue(forKey: id) else {
            lock.unlock()
            return
        }
        delivering += 1
        lock.unlock()
        body(c)
        lock.lock()
        delivering -= 1
        lock.broadcast()
        lock.unlock()
    }

    /// Answers every open request with `body`, then waits until answers already being
    /// delivered are done: afterwards this instance never calls the host.
    func close(_ body: (Completion) -> Void) {
        lock.lock()
        closed = true
        let left = Array(open.values)
        open.removeAll()
        lock.unlock()
        for c in left { body(c) }
        lock.lock()
        while delivering > 0 { lock.wait() }
        lock.unlock()
    }
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
    Handle.release(p, as: OAuthInstance.self).close { c in
        answer(.failure(OAuthError(status: PYLON_ERR_ABORTED, code: "OAUTH_ABORTED", message: "the host stopped before the provider answered; sign in again")),
               c.done, c.ctx)
    }
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
    let instance = Handle.borrow(p, as: OAuthInstance.self)
    let bytes = json.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    guard let request = try? JSONParser.parse(bytes), case .object = request else {
        answer(.failure(.bad("the request is not a JSON object")), done, ctx)
        return
    }
    guard let done, let id = instance.begin(.init(done: done, ctx: ctx)) else {
        answer(.failure(OAuthError(status: PYLON_ERR_ABORTED, code: "OAUTH_ABORTED", message: "the plugin is stopping")), done, ctx)
        return
    }
    Task {
        let result: Result<JSONValue, OAuthError>
        do throws(OAuthError) {
            result = .success(try await work(instance.engine)(request))
        } catch {
            result = .failure(error)
        }
        instance.finish(id) { answer(result, $0.done, $0.ctx) }
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
