import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// Settings of the realtime transports.
struct RealtimeConfig: Sendable {
    var maxFrameBytes = 16 * 1024 * 1024
    var keepaliveSeconds = 15
    /// A subscriber that overflowed and then delivers nothing for this long is closed.
    var stallSeconds = 5
    /// Per-connection limit on client messages (`RelayLimiter`).
    var relayRate = 20
    var relayBurst = 40
    /// A WebSocket is pinged this often; one that has not answered the previous ping is closed.
    var pingSeconds = 30
    /// After the host's close frame, the client has this long to answer before the socket closes.
    var closeSeconds = 10
}

/// The caller of a WebSocket upgrade and where its stream starts (`webSocketCaller`).
struct WebSocketCaller: Sendable {
    let auth: AuthContext
    let session: StreamSession?
    let start: WebSocketConnection.Start
}
