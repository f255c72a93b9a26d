import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import PylonData
import PylonServices

/// Ends every realtime stream when graceful shutdown begins; SSE responses and WebSocket
/// senders would otherwise keep the server's shutdown waiting forever.
package struct RealtimeShutdown: Service {
    let hub: ChangeHub
    /// Shard streams end with their shards.
    let shards: ShardRegistry?

    package init(hub: ChangeHub, shards: ShardRegistry? = nil) {
        self.hub = hub
        self.shards = shards
    }

    package func run() async throws {
        try? await gracefulShutdown()
        hub.closeAll()
        shards?.shutdown()
    }
}
