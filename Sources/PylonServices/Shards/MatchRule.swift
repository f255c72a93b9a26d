import PylonJSON

/// One player waiting in the matchmaker's queue.
package struct MatchTicket: Sendable {
    /// The player: the caller's user id.
    package let player: String
    /// `criteria.mode`, "default" when absent.
    package let mode: String
    /// What the player asked for (a JSON object, at most `Matchmaker.maxCriteriaBytes`).
    package let criteria: JSONValue
    /// When it joined the queue (monotonic ns).
    package let since: Int64
}

/// Forms groups from the queue (Pylon's `MatchFn`): given the waiting players oldest first,
/// returns the groups to start a shard for, each a list of distinct players from the queue.
/// A player in no group keeps waiting. Called on the matchmaker's loop, never concurrently.
package protocol MatchRule: Sendable {
    func groups(_ queue: [MatchTicket]) -> [[String]]
}

/// Pylon's `fixed_size_match`: the first `size(mode)` players who share a `criteria.mode`
/// make a group, as many groups as there are full ones.
package struct FixedSizeMatch: MatchRule {
    let size: @Sendable (String) -> Int

    package init(size: @escaping @Sendable (String) -> Int) { self.size = size }

    package func groups(_ queue: [MatchTicket]) -> [[String]] {
        var forming: [String: [String]] = [:]
        var out: [[String]] = []
        for t in queue {
            var g = forming[t.mode, default: []]
            g.append(t.player)
            if g.count >= max(1, size(t.mode)) {
                out.append(g)
                g = []
            }
            forming[t.mode] = g
        }
        return out
    }
}
