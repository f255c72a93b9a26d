/// Limits of the in-memory rooms (`/api/rooms/*`, pylon-aux.md §4). Pylon caps the number
/// of rooms and evicts idle members (in theory; its cleanup job is a no-op); the other caps
/// are ours, so that one user cannot hold unbounded state or flood a room.
public struct RoomLimits: Sendable, Equatable {
    /// Rooms on this host (`PYLON_MAX_ROOMS`; Pylon's 10,000). A join that would create one
    /// more answers 429 `ROOM_LIMIT_REACHED`.
    public var maxRooms = 10_000
    /// Rooms one user may be in at once (`PYLON_ROOMS_PER_USER`).
    public var perUser = 32
    /// Members of one room (`PYLON_ROOM_MAX_MEMBERS`).
    public var maxMembers = 1_000
    /// A member that sent no presence update, join or broadcast for this long is evicted and
    /// its leave is sent to the room (`PYLON_ROOM_IDLE_SECS`; Pylon's 120 s).
    public var idleSeconds = 120.0
    /// Joins, presence updates and broadcasts one user may send per second
    /// (`PYLON_ROOM_MESSAGE_RATE`); bursts of twice that pass.
    public var messageRate = 20
    /// The largest `data` of a member or a broadcast, as JSON text.
    public var maxDataBytes = 16 * 1024

    public init() {}
}
