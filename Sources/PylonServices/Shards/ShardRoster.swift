import PylonCore
import PylonJSON

/// The players of a shard with a roster: the only users the host lets read the shard,
/// subscribe to it or send it input — each only as its own subscriber id — besides the
/// admin. A matched shard gets its group as its roster; a shard created by the admin
/// (`POST /api/shards`) or by a function (`ctx.shards.create`) gets one when the request
/// names its `players` (`requested(in:)`). Checked by the host before the sim's own
/// `authorize_subscribe` / `authorize_input`, which still run (both must admit).
///
/// To anyone else such a shard does not exist: the routes answer 404 `SHARD_NOT_FOUND`
/// exactly as for an id no shard has, so the ids of other matches (`match_<hex>_<n>`, easy
/// to guess) or private rooms are never confirmed. A shard without a roster leaves every
/// admission to its sim.
///
/// Saved with a persisting shard under `"players"` in its settings, so a restored shard
/// keeps its players. Immutable: no lock.
package struct ShardRoster: Sendable, Equatable {
    /// The players' user ids, sorted, each once.
    package let players: [String]
    private let members: Set<String>

    /// The most players a roster names: the matchmaker's largest group, so every roster the
    /// host makes or is asked for is held to one bound.
    package static let maxPlayers = MatchmakerSettings.maxGroup

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
                        message: "on a shard with players a player subscribes and sends input as itself: drop sid (or subscriber_id), or set it to your user id")
    }

    package var json: JSONValue { .array(players.map { .string($0) }) }

    /// The roster a create request names in `"players"` (`POST /api/shards`,
    /// `ctx.shards.create`): nil when absent or null (the sim alone admits). Anything but a
    /// list of 1 to `maxPlayers` distinct user ids is refused, so a typo never creates a
    /// shard open to everyone.
    package static func requested(in body: JSONValue) throws(HostError) -> ShardRoster? {
        guard let v = body["players"], v != .null else { return nil }
        do {
            return try listed(v)
        } catch {
            throw HostError.badRequest("INVALID_PLAYERS",
                                       "\(error.why); send \"players\" as a list of 1 to \(maxPlayers) distinct user ids (each 1..128 of letters, digits, '_', '-', '.', ':' and '@'), or leave it out for a shard its sim alone admits")
        }
    }

    /// The roster saved in a shard's settings: nil when there is none (`"players"` absent or
    /// null); a value that is not a roster is corrupt (thrown), so a damaged row never comes
    /// back as a shard open to everyone.
    static func saved(in settings: JSONValue) throws(HostError) -> ShardRoster? {
        guard let v = settings["players"], v != .null else { return nil }
        do {
            return try listed(v)
        } catch {
            throw HostError(status: 500, code: "INVALID_SAVED_ROSTER", message: "the saved players are not a roster (\(error.why))")
        }
    }

    /// Why a value is not a roster.
    struct Invalid: Error {
        let why: String
    }

    /// The one check of a listed roster, for requests and saved rows alike.
    private static func listed(_ v: JSONValue) throws(Invalid) -> ShardRoster {
        guard let list = v.arrayValue else { throw Invalid(why: "\"players\" is not a list") }
        guard list.count <= maxPlayers else { throw Invalid(why: "\"players\" names \(list.count) users, more than \(maxPlayers)") }
        var ids: [String] = []
        var seen: Set<String> = []
        for (i, item) in list.enumerated() {
            guard let id = item.stringValue, ShardNames.valid(id) else { throw Invalid(why: "players[\(i)] is not a user id") }
            guard seen.insert(id).inserted else { throw Invalid(why: "players[\(i)] names \(id) again") }
            ids.append(id)
        }
        guard let roster = ShardRoster(ids) else { throw Invalid(why: "\"players\" is empty (a shard with no players admits no user)") }
        return roster
    }
}
