/// The matchmaker's own shards: those running (counted against its share of the host's
/// shard slots, `MatchmakerSettings.shardCap`) and those nobody has joined yet (each with
/// the deadline of its join grace). The bounds that keep a handful of users from filling
/// `PYLON_SHARD_MAX`: a loop of enqueue → matched → ack used to start one shard per round
/// that nobody joined and that held its slot for its whole idle time (90 s).
///
/// Not thread-safe: the matchmaker calls it under its lock. Takes a shard's own lock
/// (`hasBeenJoined`) inside that one; a shard never calls the matchmaker, so no cycle.
struct MatchedShards {
    private struct Waiting {
        let shard: Shard
        let players: Set<String>
        /// `TickScheduler.now()` after which, still unjoined, the shard is stopped.
        let deadline: Int64
    }

    /// Ids of the matched shards still running (as of the last sweep or start).
    private(set) var running: Set<String> = []
    private var waiting: [String: Waiting] = [:]

    mutating func started(_ shard: Shard, players: [String], deadline: Int64) {
        running.insert(shard.id)
        waiting[shard.id] = Waiting(shard: shard, players: Set(players), deadline: deadline)
    }

    /// The id of a running match of `player` that nobody has joined yet, if any.
    func unjoined(of player: String) -> String? {
        waiting.values.first { $0.players.contains(player) && $0.shard.isRunning && !$0.shard.hasBeenJoined }?.shard.id
    }

    /// Forgets shards that are no longer running (`live`: the registry's ids) or that were
    /// joined; returns those whose grace ended by `now` unjoined, for the caller to stop
    /// (outside its lock), and no longer counts them as running.
    mutating func sweep(live: Set<String>, now: Int64) -> [Shard] {
        running.formIntersection(live)
        var expired: [Shard] = []
        for (id, w) in waiting {
            if !running.contains(id) || w.shard.hasBeenJoined {
                waiting[id] = nil
            } else if now >= w.deadline {
                // The caller stops it now: its slot is free for this round's groups.
                waiting[id] = nil
                running.remove(id)
                expired.append(w.shard)
            }
        }
        return expired
    }
}
