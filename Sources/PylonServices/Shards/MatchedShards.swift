/// The matchmaker's own shards while they run (counted against its share of the host's
/// shard slots, `MatchmakerSettings.shardCap`), each with its group and what the sweeps saw
/// of it. The bounds that keep a handful of users from filling the slots:
/// - a loop of enqueue → matched → ack used to start one shard per round that nobody joined
///   and that held its slot for its whole idle time (90 s): a match nobody joins within the
///   join grace is stopped;
/// - the same loop with a moment on the shard's WebSocket (joined, so not "unjoined") left
///   one empty shard per round, again for 90 s (outside probe jobsfiles, F5): a joined match
///   with no subscriber is stopped once every player of its group has queued again, or
///   once it has stayed empty for the join grace.
/// A match with a subscriber is never stopped here.
///
/// Not thread-safe: the matchmaker calls it under its lock. Takes a shard's own lock
/// (`hasBeenJoined`, `status`) inside that one; a shard never calls the matchmaker, so no cycle.
struct MatchedShards {
    /// Why a sweep stopped a match (the log's words and the counter it goes in).
    enum Release {
        case unjoined, everyoneRequeued, leftEmpty

        var metric: String {
            switch self {
            case .unjoined: "matchmaker_unjoined_stopped_total"
            case .everyoneRequeued, .leftEmpty: "matchmaker_left_stopped_total"
            }
        }

        func reason(grace: Int) -> String {
            switch self {
            case .unjoined: "no player joined within \(grace) s of the match"
            case .everyoneRequeued: "its players left it and all queued again"
            case .leftEmpty: "its players left it \(grace) s ago"
            }
        }
    }

    private struct Match {
        let shard: Shard
        let players: Set<String>
        /// Players who have not queued again since this match.
        var staying: Set<String>
        /// `TickScheduler.now()` after which, still unjoined, the shard is stopped.
        let joinDeadline: Int64
        /// When a sweep first found it joined and empty (nil: it had a subscriber at the last sweep).
        var emptySince: Int64?
    }

    private var matches: [String: Match] = [:]

    /// How many matched shards run (as of the last sweep or start).
    var running: Int { matches.count }

    mutating func started(_ shard: Shard, players: [String], deadline: Int64) {
        matches[shard.id] = Match(shard: shard, players: Set(players), staying: Set(players), joinDeadline: deadline)
    }

    /// The id of a running match of `player` that nobody has joined yet, if any.
    func unjoined(of player: String) -> String? {
        matches.values.first { $0.players.contains(player) && $0.shard.isRunning && !$0.shard.hasBeenJoined }?.shard.id
    }

    /// `player` queued again: it is done with its earlier matches.
    mutating func requeued(_ player: String) {
        for id in matches.keys { matches[id]?.staying.remove(player) }
    }

    /// Forgets shards that are no longer running (`live`: the registry's ids); returns those
    /// to stop now (for the caller to stop outside its lock), which no longer count as
    /// running: unjoined past their deadline, and joined ones with no subscriber whose
    /// players all queued again or that have been empty for `grace` nanoseconds.
    mutating func sweep(live: Set<String>, now: Int64, grace: Int64) -> [(Shard, Release)] {
        var released: [(Shard, Release)] = []
        for (id, m) in matches {
            guard live.contains(id), m.shard.isRunning else {
                matches[id] = nil
                continue
            }
            let release: Release?
            if !m.shard.hasBeenJoined {
                release = now >= m.joinDeadline ? .unjoined : nil
            } else if m.shard.status.subscribers > 0 {
                matches[id]?.emptySince = nil
                release = nil
            } else if m.staying.isEmpty {
                release = .everyoneRequeued
            } else if let since = m.emptySince {
                release = now - since >= grace ? .leftEmpty : nil
            } else {
                matches[id]?.emptySince = now
                release = nil
            }
            if let release {
                // The caller stops it now: its slot is free for this round's groups.
                matches[id] = nil
                released.append((m.shard, release))
            }
        }
        return released
    }
}
