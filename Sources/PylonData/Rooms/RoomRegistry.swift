import Foundation
import PylonCore
import PylonJSON

/// A room event (pylon-aux.md §4.1 shapes) and the users whose streams get it: the room's
/// members — after a join, before a leave — never every connected client as in Pylon.
package struct RoomEvent: Sendable {
    package let room: String
    package let json: JSONValue
    package let recipients: [String]
}

/// The rooms of this host, in memory as in Pylon: created by the first join, removed when
/// the last member leaves. Members are users (a user in two tabs is one member). Every
/// operation returns the events to deliver; `RoomService` delivers them.
///
/// What Pylon leaves undone and this does: limits on rooms per user, members per room and
/// messages per user (`RoomLimits`); idle members evicted (`evictIdle`) with their leave
/// sent; `leaveAll` for a user whose last stream closed; snapshots and peer lists only for
/// members. Threads: any; one lock guards the state (operations are short and never block).
package final class RoomRegistry: @unchecked Sendable {
    struct Member {
        let userID: String
        var data: JSONValue
        let joinedAt: String
        /// Joins in order, for snapshots and peer lists.
        let order: UInt64
        var lastActive: Double
    }

    /// A user's rooms and message bucket. Kept after the last leave until the bucket has
    /// refilled, so leaving and joining again does not reset the rate limit.
    struct UserState {
        var rooms: Set<String> = []
        var tokens: Double
        var refilled: Double
    }

    package enum BroadcastOutcome: Sendable, Equatable {
        case sent([String])
        /// The room does not exist (the admin broadcasting to a room nobody is in).
        case roomEmpty
        /// The sender is not a member (whether or not the room exists: a non-member learns nothing).
        case notInRoom
    }

    package let limits: RoomLimits
    private let clock: @Sendable () -> Double
    private let lock = NSLock()
    private var rooms: [String: [String: Member]] = [:]
    private var users: [String: UserState] = [:]
    private var joins: UInt64 = 0

    /// `clock`: monotonic seconds (tests pass their own).
    package init(limits: RoomLimits, clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.limits = limits
        self.clock = clock
    }

    // MARK: Operations

    /// Joins `user` to `room` (creating it) with `data`, or — already a member — replaces
    /// its data (a presence event; no second join). Returns the snapshot of the peers present
    /// before, and the events. 429 when a limit is reached.
    package func join(_ room: String, user: String, data: JSONValue?) throws(HostError) -> (snapshot: JSONValue, events: [RoomEvent]) {
        lock.lock()
        defer { lock.unlock() }
        let now = clock()
        let members = rooms[room] ?? [:]
        let snapshot = Self.snapshot(room, members.values.filter { $0.userID != user })
        if var me = members[user] {
            try admit(user, now)
            if let data { me.data = data }
            me.lastActive = now
            rooms[room]![user] = me
            return (snapshot, [presenceEvent(room, me)])
        }
        if members.isEmpty && rooms.count >= limits.maxRooms {
            throw HostError(status: 429, code: "ROOM_LIMIT_REACHED",
                            message: "this host already has \(limits.maxRooms) rooms (PYLON_MAX_ROOMS); join an existing room or try later")
        }
        if (users[user]?.rooms.count ?? 0) >= limits.perUser {
            throw HostError(status: 429, code: "ROOMS_PER_USER_LIMIT",
                            message: "you are in \(limits.perUser) rooms already (PYLON_ROOMS_PER_USER); leave one first")
        }
        if members.count >= limits.maxMembers {
            throw HostError(status: 429, code: "ROOM_FULL", message: "the room has \(limits.maxMembers) members (PYLON_ROOM_MAX_MEMBERS)")
        }
        // Refusals above cost no message: only what reaches the room does.
        try admit(user, now)
        joins += 1
        let me = Member(userID: user, data: data ?? .null, joinedAt: ISOTime.now(), order: joins, lastActive: now)
        rooms[room, default: [:]][user] = me
        users[user]!.rooms.insert(room)
        var event: [(String, JSONValue)] = [("type", "join"), ("room", .string(room)), ("user_id", .string(user))]
        if !me.data.isNull { event.append(("data", me.data)) }
        return (snapshot, [RoomEvent(room: room, json: .object(event), recipients: Array(rooms[room]!.keys))])
    }

    /// Removes `user` from `room`; nil when it was not a member.
    package func leave(_ room: String, user: String) -> RoomEvent? {
        lock.withLock { remove(user, from: room, reason: nil) }
    }

    /// Replaces a member's data (and counts as its heartbeat); nil when not a member.
    package func setPresence(_ room: String, user: String, data: JSONValue?) throws(HostError) -> RoomEvent? {
        lock.lock()
        defer { lock.unlock() }
        guard var me = rooms[room]?[user] else { return nil }
        let now = clock()
        try admit(user, now)
        me.data = data ?? .null
        me.lastActive = now
        rooms[room]![user] = me
        return presenceEvent(room, me)
    }

    /// A message to every member. `sender` nil: the admin token, which need not be a member.
    package func broadcast(_ room: String, sender: String?, topic: String, data: JSONValue?) throws(HostError) -> (BroadcastOutcome, RoomEvent?) {
        lock.lock()
        defer { lock.unlock() }
        guard let members = rooms[room] else { return (sender == nil ? .roomEmpty : .notInRoom, nil) }
        var event: [(String, JSONValue)] = [("type", "broadcast"), ("room", .string(room))]
        if let sender {
            guard members[sender] != nil else { return (.notInRoom, nil) }
            let now = clock()
            try admit(sender, now)
            rooms[room]![sender]!.lastActive = now
            event.append(("sender", .string(sender)))
        }
        event += [("topic", .string(topic)), ("data", data ?? .null)]
        let recipients = Array(members.keys)
        return (.sent(recipients), RoomEvent(room: room, json: .object(event), recipients: recipients))
    }

    /// Every room `user` is in (all rooms for nil: the admin), as `{name, members}`, by name.
    package func list(for user: String?) -> [(name: String, members: Int)] {
        lock.withLock {
            let names = user.map { users[$0]?.rooms.sorted() ?? [] } ?? rooms.keys.sorted()
            return names.compactMap { name in rooms[name].map { (name, $0.count) } }
        }
    }

    /// The members of `room` as PeerInfo, in join order; nil when the room does not exist or
    /// `user` (non-nil) is not a member.
    package func peers(_ room: String, for user: String?) -> [JSONValue]? {
        lock.withLock {
            guard let members = rooms[room], user.map({ members[$0] != nil }) ?? true else { return nil }
            return Self.peerList(members.values)
        }
    }

    /// Removes `user` from every room (its last realtime stream closed).
    package func leaveAll(_ user: String) -> [RoomEvent] {
        lock.withLock {
            (users[user]?.rooms.sorted() ?? []).compactMap { remove(user, from: $0, reason: "disconnect") }
        }
    }

    /// Evicts members idle for `limits.idleSeconds` and forgets users with no room whose
    /// bucket has refilled. Returns the leave events.
    package func evictIdle() -> [RoomEvent] {
        lock.withLock {
            let now = clock()
            var events: [RoomEvent] = []
            for (room, members) in rooms {
                for m in members.values.sorted(by: { $0.order < $1.order }) where now - m.lastActive >= limits.idleSeconds {
                    if let e = remove(m.userID, from: room, reason: "idle") { events.append(e) }
                }
            }
            let burst = Double(limits.messageRate * 2)
            users = users.filter { !$0.value.rooms.isEmpty || refilled($0.value, now) < burst }
            return events
        }
    }

    /// Rooms and members, for the metrics.
    package var counts: (rooms: Int, members: Int) {
        lock.withLock { (rooms.count, rooms.values.reduce(0) { $0 + $1.count }) }
    }

    // MARK: Pieces (callers hold the lock)

    /// Takes one message from `user`'s bucket (creating it full), or throws 429.
    private func admit(_ user: String, _ now: Double) throws(HostError) {
        let burst = Double(limits.messageRate * 2)
        var state = users[user] ?? UserState(tokens: burst, refilled: now)
        state.tokens = refilled(state, now)
        state.refilled = now
        guard state.tokens >= 1 else {
            users[user] = state
            throw HostError(status: 429, code: "ROOM_RATE_LIMITED",
                            message: "more than \(limits.messageRate) room messages per second (PYLON_ROOM_MESSAGE_RATE); send less often")
        }
        state.tokens -= 1
        users[user] = state
    }

    private func refilled(_ state: UserState, _ now: Double) -> Double {
        min(Double(limits.messageRate * 2), state.tokens + max(0, now - state.refilled) * Double(limits.messageRate))
    }

    private func remove(_ user: String, from room: String, reason: String?) -> RoomEvent? {
        guard let members = rooms[room], members[user] != nil else { return nil }
        let recipients = Array(members.keys)
        rooms[room]!.removeValue(forKey: user)
        if rooms[room]!.isEmpty { rooms.removeValue(forKey: room) }
        users[user]?.rooms.remove(room)
        var event: [(String, JSONValue)] = [("type", "leave"), ("room", .string(room)), ("user_id", .string(user))]
        if let reason { event.append(("reason", .string(reason))) }
        return RoomEvent(room: room, json: .object(event), recipients: recipients)
    }

    private func presenceEvent(_ room: String, _ m: Member) -> RoomEvent {
        RoomEvent(room: room, json: .object([("type", "presence"), ("room", .string(room)), ("user_id", .string(m.userID)), ("data", m.data)]),
                  recipients: Array(rooms[room]!.keys))
    }

    private static func snapshot(_ room: String, _ members: some Sequence<Member>) -> JSONValue {
        .object([("type", "snapshot"), ("room", .string(room)), ("peers", .array(peerList(members)))])
    }

    private static func peerList(_ members: some Sequence<Member>) -> [JSONValue] {
        members.sorted { $0.order < $1.order }.map {
            .object([("user_id", .string($0.userID)), ("data", $0.data), ("joined_at", .string($0.joinedAt))])
        }
    }
}
