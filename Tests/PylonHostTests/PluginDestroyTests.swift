import Foundation
import PylonCore
import PylonPluginABI
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The ABI lets a plugin call the host only until `destroy` returns (`pylon_host_v1`'s
/// lifetime), and every asynchronous request gets exactly one completion. Plugins whose
/// work outlives a call are destroyed here, in-process, with work in flight (`BareHost`).
/// FnBun's case is `FnBunOwnReadersTests.destroyWithACallInFlight`.
@Suite("Plugins destroyed with work in flight answer it before destroy returns, then stay silent")
struct PluginDestroyTests {
    /// Completions of OAuth requests, as the host would receive them.
    final class Answers: @unchecked Sendable {
        let lock = NSLock()
        var codes: [String] = []
        var all: [String] { lock.withLock { codes } }
    }

    static let done: pylon_oauth_done_fn = { ctx, status, _, _, err in
        let answers = Unmanaged<Answers>.fromOpaque(ctx!).takeUnretainedValue()
        let code = status == PYLON_OK ? "OK" : PluginError(status, err).code
        answers.lock.withLock { answers.codes.append(code) }
    }

    @Test("OAuth: a request waiting on a provider that never answers gets OAUTH_ABORTED from destroy, once")
    func oauthAnswersOpenRequests() async throws {
        // A provider that takes connections (the kernel's backlog) and never answers.
        let provider = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(provider >= 0)
        defer { close(provider) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(provider, $0, size) == 0 && listen(provider, 8) == 0 && getsockname(provider, $0, &size) == 0 }
        }
        #expect(bound)
        let port = UInt16(bigEndian: addr.sin_port)
        let config = #"{"providers":{"slow":{"client_id":"c","client_secret":"s","oidc_issuer":"http://127.0.0.1:\#(port)"}},"timeout_ms":1000}"#
        let host = try BareHost(path: TestPaths.pluginsDir + "/libPylonAuthOAuth.so", config: config)
        let table = try host.interface(PYLON_CAP_AUTH_OAUTH, as: pylon_oauth_v1.self)
        let answers = Answers()
        let ctx = Unmanaged.passRetained(answers).toOpaque() // kept: a late answer must find it
        let request = Array(#"{"provider":"slow","state":"st","nonce":"no","code_challenge":"ch","redirect_uri":"http://127.0.0.1/cb"}"#.utf8)
        request.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { table.pointee.authorize(host.instance, $0.baseAddress, $0.count, Self.done, ctx) }
        }
        #expect(answers.all.isEmpty, "the discovery request is waiting on the provider")
        host.close()
        #expect(answers.all == ["OAUTH_ABORTED"], "\(answers.all)")
        // The provider request itself times out after 1 s; its answer must go nowhere.
        try await Task.sleep(for: .seconds(2))
        #expect(answers.all == ["OAUTH_ABORTED"], "answered twice: \(answers.all)")
    }
}
