import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import PylonCore
import PylonData

/// Settings of the realtime transports.
package struct RealtimeConfig: Sendable {
    /// Largest client message, one frame or fragments in total (`HostConfig.maxFrameBytes`).
    package var maxFrameBytes = 1024 * 1024
    package var keepaliveSeconds = 15
    /// A subscriber that overflowed and then delivers nothing for this long is closed.
    package var stallSeconds = 5
    /// Per-connection limit on client messages (`RelayLimiter`).
    package var relayRate = 20
    package var relayBurst = 40
    /// Largest client message (topic/presence) relayed; a larger one gets `RELAY_TOO_LARGE`.
    package var maxRelayBytes = 64 * 1024
    /// A WebSocket whose pending writes make no progress for this long is closed (0: never).
    package var writeTimeout: Double = 30
    /// A WebSocket is pinged this often; one that has not answered the previous ping is closed.
    package var pingSeconds = 30
    /// After the host's close frame, the client has this long to answer before the socket closes.
    package var closeSeconds = 10

    package init() {}

    /// The defaults, with the frame and relay limits the host's settings give.
    package init(_ config: HostConfig) {
        maxFrameBytes = config.maxFrameBytes
        relayRate = config.wsRelayRate
        relayBurst = config.wsRelayBurst
        maxRelayBytes = config.wsMaxRelayBytes
        writeTimeout = config.wsWriteTimeout ?? config.writeTimeout
    }
}

/// The caller of a WebSocket upgrade and where its stream starts (`webSocketCaller`).
struct WebSocketCaller: Sendable {
    let auth: AuthContext
    let session: StreamSession?
    let start: WebSocketConnection.Start
}

/// What an accepted WebSocket upgrade becomes, decided before its 101 is sent
/// (`RouteContext.admitWebSocket`): a subscriber already registered with the hub, or the
/// reason the connection is closed with 1008 right after the upgrade.
enum WebSocketAdmission: Sendable {
    case subscribed(Subscriber, WebSocketConnection.Start)
    case refused(String)
}
