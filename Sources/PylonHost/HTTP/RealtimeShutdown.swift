import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// Ends every realtime stream when graceful shutdown begins; SSE responses and WebSocket
/// senders would otherwise keep the server's shutdown waiting forever.
struct RealtimeShutdown: Service {
    let hub: ChangeHub

    func run() async throws {
        try? await gracefulShutdown()
        hub.closeAll()
    }
}
