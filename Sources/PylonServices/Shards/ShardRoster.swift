import PylonCore
import PylonJSON

/// The players of a matched shard (one the matchmaker started for a group): the only users
/// the host lets read the shard, subscribe to it or send it input — each only as its own
/// subscriber id — besides the admin. Checked by the host before the sim's own
/// `authorize_subscribe` / `authorize_input`, which still run (both must admit).
///
/// To anyone else such a shard does not exist: the routes answer 404 `SHARD_NOT_FOUND`
/// exactly as for an id no shard has, so the ids of other matches (`match_<hex>_<n>`, easy
/// to guess) are never confirmed. A shard without a roster (created by the admin or by a
/// function) leaves every admission to its sim, as before.
///
/// Saved with a persisting shard under `"players"` in its settings, so a restored match
/// keeps its players. Immutable: no lock.
package struct ShardRoster: Sendable, Equatable {
    /// The players' user ids, sorted, each once.
    package let players: [String]
    private let members: Set<String>

    /// The roster of `players`; nil when there is none (an empty group admits no one, which
    /// the matchmaker never forms).
    package init?(_ players: some Sequence<String>) {
        let set = Set(players)
        guard !set.isEmpty else { return nil }
        members = set
        self.players = set.sorted()
    }

    /// Whether `auth` may know of the shard: the admin, or a player.
    package func admits(_ auth: AuthContext) -> Bool {
        if auth.isAdmin { return true }
        guard let user = auth.userID else { return false }
        return members.contains(user)
    }

    /// Refuses a player who subscribes or sends input under another subscriber id than its
    /// own user id (the admin may use any). Call after `admits`.
    package func check(subscriber sid: String, for auth: AuthContext) throws(HostError) {
        guard !auth.isAdmin, sid != auth.userID else { return }
        throw HostError(status: 403, code: "SID_NOT_YOURS",
                        message: "on a matched shard a player subscribes and sends input as itself: drop sid (or subscriber_id), or set it to your user id")
    }

    package var json: JSONValue { .array(players.map { .string($0) }) }

    /// The roster saved in a shard's settings: nil when there is none (`"players"` absent or
    /// null); a value that is not a list of subscriber ids is corrupt (thrown), so a damaged
    /// row never comes back as a shard open to everyone.
    static func saved(in settings: JSONValue) throws(HostError) -> ShardRoster? {
        guard let v = settings["players"], v != .null else { return nil }
        guard let list = v.arrayValue else { throw corrupt }
        var ids: [String] = []
        for item in list {
            guard let id = item.stringValue, ShardNames.valid(id) else { throw corrupt }
            ids.append(id)
        }
        guard let roster = ShardRoster(ids) else { throw corrupt }
        return roster
    }

    private static var corrupt: HostError {
        HostError(status: 500, code: "INVALID_SAVED_ROSTER", message: "the saved players are not a non-empty list of subscriber ids")
    }
}
