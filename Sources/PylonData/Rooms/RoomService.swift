import Foundation
import PylonCore
import PylonJSON

/// Rooms and presence on this host: the `RoomRegistry` plus delivery of its events to the
/// members' realtime streams (WS and SSE) through the hub, the idle sweep, and leaving every
/// room when a user's last stream closes.
///
/// Rooms live in memory, per host, as in Pylon: with several hosts behind one address a
/// room's members must reach the same host (sticky sessions); nothing is stored.
package final class RoomService: Sendable {
    package let registry: RoomRegistry
    private let hub: ChangeHub
    private let metrics: Metrics

    package init(limits: RoomLimits, hub: ChangeHub, metrics: Metrics) {
        registry = RoomRegistry(limits: limits)
        self.hub = hub
        self.metrics = metrics
        let rooms = metrics.collectedGauge("rooms")
        let members = metrics.collectedGauge("room_members")
        metrics.onCollect { [registry] _ in
            let (r, m) = registry.counts
            rooms.set(Double(r))
            members.set(Double(m))
        }
        hub.onUserGone = { [weak self] user in
            guard let self else { return }
            deliver(registry.leaveAll(user))
        }
    }

    /// Sends each event to its recipients' streams.
    package func deliver(_ events: [RoomEvent]) {
        for e in events { hub.relay(JSONWriter.string(e.json), toUsers: e.recipients) }
        metrics.add("room_events_total", Int64(events.count))
    }

    /// Evicts idle members until cancelled, checking a few times per idle period (at most
    /// every 5 s).
    package func run() async {
        let interval = max(0.05, min(registry.limits.idleSeconds / 4, 5))
        while true {
            do { try await Task.sleep(for: .seconds(interval)) } catch { return }
            deliver(registry.evictIdle())
        }
    }
}
