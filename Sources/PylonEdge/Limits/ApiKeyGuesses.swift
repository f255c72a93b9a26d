import HTTPTypes
import NIOCore
import PylonCore

/// Wrong API keys (`pk.` tokens that name no live key: 401 INVALID_API_KEY), counted as
/// password guesses are, with the LOGIN auth bucket's caps (Pylon's 5 a minute per client
/// address, 30 an hour per account — here the key id the token names). Once an address or
/// a key id is at its count, every `pk.` token it sends is refused with 429 before it is
/// checked, a right one too, so guessing is slow and no answer tells a key that exists from
/// one that does not. Only failures count: a client using its keys is never held back.
/// `RequestGuard.check` refuses; `APIMiddleware` counts the failures it answers;
/// WebSocket handshakes (whose token may come as a subprotocol) do both in
/// `RouteContext.webSocketCaller`. One instance, shared by both (`RouteContext.keyGuesses`).
package final class ApiKeyGuesses: Sendable {
    static let invalidCode = "INVALID_API_KEY"
    private let byAddress: FixedWindowLimiter<ClientAddress>?
    private let byKey: FixedWindowLimiter<String>?
    private let trustProxyHops: Int

    package init(_ caps: AuthRateLimits.Caps?, maxKeys: Int, trustProxyHops: Int) {
        let perAddress = caps?.perAddressPerMinute ?? 0, perKey = caps?.perAccountPerHour ?? 0
        byAddress = perAddress > 0 ? FixedWindowLimiter(limit: perAddress, windowSeconds: 60, maxKeys: maxKeys) : nil
        byKey = perKey > 0 ? FixedWindowLimiter(limit: perKey, windowSeconds: 3600, maxKeys: maxKeys) : nil
        self.trustProxyHops = trustProxyHops
    }

    /// 429 when `headers` carry a `pk.` bearer token whose address or key id is at its
    /// count of wrong keys; nil otherwise (counts nothing).
    func refusal(_ headers: HTTPFields, peer: SocketAddress?) -> HostError? {
        guard let token = Self.apiKey(headers) else { return nil }
        return refusal(token: token, client: ClientAddress.resolve(peer: peer, headers: headers, trustHops: trustProxyHops))
    }

    /// The same for a token found elsewhere (a WebSocket's `bearer.` subprotocol); nil for
    /// a token that is no API key.
    func refusal(token: String, client: ClientAddress) -> HostError? {
        guard token.hasPrefix("pk."),
              let wait = byAddress?.waiting(client) ?? Self.keyID(token).flatMap({ byKey?.waiting($0) }) else { return nil }
        return .rateLimited(retryAfter: wait, "too many wrong API keys from your address or for this key (PYLON_AUTH_RATE_LIMIT_LOGIN): retry after \(wait) s")
    }

    /// Counts a wrong key sent with `headers` from `peer`.
    func failed(_ headers: HTTPFields, peer: SocketAddress?) {
        guard let token = Self.apiKey(headers) else { return }
        failed(token: token, client: ClientAddress.resolve(peer: peer, headers: headers, trustHops: trustProxyHops))
    }

    func failed(token: String, client: ClientAddress) {
        guard token.hasPrefix("pk.") else { return }
        _ = byAddress?.take(client)
        if let id = Self.keyID(token) { _ = byKey?.take(id) }
    }

    /// The bearer token, when it is an API key.
    static func apiKey(_ headers: HTTPFields) -> String? {
        guard let h = headers[.authorization], h.lowercased().hasPrefix("bearer ") else { return nil }
        let token = h.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.hasPrefix("pk.") ? token : nil
    }

    /// The key id a token names (`key_…`), when it has one of a sane length.
    static func keyID(_ token: String) -> String? {
        let parts = token.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[1].isEmpty, parts[1].utf8.count <= 64 else { return nil }
        return String(parts[1])
    }
}
