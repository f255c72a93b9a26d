import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import PylonData

/// Ends every realtime stream when graceful shutdown begins; SSE responses and WebSocket
/// senders would otherwise keep the server's shutdown waiting forever.
package struct RealtimeShutdown: Service {
    let hub: ChangeHub

    package init(hub: ChangeHub) {
        self.hub = hub
    }

    package func run() async throws {
        try? await gracefulShutdown()
        hub.closeAll()
    }
}
