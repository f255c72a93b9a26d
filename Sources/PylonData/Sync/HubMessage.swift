import Foundation
import PylonCore
import PylonJSON

/// A committed change as the hub fans it out: the wire JSON is built once per event and
/// shared by every subscriber (Strings are copy-on-write), whatever their number.
public struct HubEvent: Sendable {
    public let seq: Int64
    public let entity: String
    public let kind: ChangeKind
    /// The bare change event JSON (pylon-core.md §3.1, live form: `"timestamp": ""` is
    /// replaced by the commit time, which clients ignore).
    public let payload: String
    /// The full row the read policy judges: the row after an insert/update, the last row
    /// before a delete.
    public let row: JSONValue?
}

/// What a subscriber's sender takes from its queue.
public enum HubMessage: Sendable {
    case change(HubEvent)
    /// Frames that are not change events: presence/topic relays (WS only) and room events
    /// (`ChangeHub.relay(_:toUsers:)`, WS and SSE).
    case relay(String)
    /// The hub's disconnect notices in this range (`ChangeHub.leaveFrames`; WS only).
    case leaves(ClosedRange<Int64>)
}

extension HubMessage {
    /// What the message costs a subscriber's byte budget (`Subscriber.byteLimit`): its
    /// frame's text. Disconnect notices count nothing: the hub keeps them once for every
    /// connection (`LeaveLog`), whatever the number of connections behind.
    public var byteCount: Int {
        switch self {
        case let .change(e): e.payload.utf8.count
        case let .relay(text): text.utf8.count
        case .leaves: 0
        }
    }
}
