import Foundation
import Logging
import PylonCore
import PylonJSON

/// The host's matchmaker (pylon-aux.md §5.6, with the HTTP routes Pylon lacks): signed-in
/// users wait in one queue (one place each: enqueueing again changes nothing), a loop every
/// `intervalMs` drops those who waited past `maxWaitSeconds`, asks the `MatchRule` for
/// groups, starts a shard of the configured sim for each (`match_<hex unix secs>_<n>`) and
/// records each player's assignment until the player acks it (or the shard is gone). The
/// shard admits only its group (`ShardRoster`, and the admin): a player subscribes to it as
/// itself (the default `sid` is its user id), anyone else finds no such shard.
///
/// Memory is bounded: at most `queueMax` players wait (503 `MATCHMAKER_FULL` past it), each
/// with criteria of at most `maxCriteriaBytes`; a player holds one place or one assignment.
/// Shard slots are bounded too (`MatchedShards`): a matched shard nobody joins within
/// `joinGraceSeconds` is stopped; a player whose match nobody has joined yet cannot queue
/// again (409 `MATCH_NOT_JOINED`); a joined match with no subscriber left is stopped once
/// all its players queued again, or after `joinGraceSeconds` empty; at most `shardCap`
/// matched shards run at once (more groups wait in the queue).
///
/// Threads: any; the queue and the assignments are under `lock`; the loop is one task.
package final class Matchmaker: @unchecked Sendable {
    /// The largest `criteria` object, as JSON text.
    package static let maxCriteriaBytes = 4 * 1024
    /// The longest mode name.
    static let maxModeBytes = 64

    private let settings: MatchmakerSettings
    /// The sim of matched shards; nil: none could be chosen (enqueue answers 503).
    package let sim: String?
    private let shardConfig: JSONValue
    private let shardSettings: ShardSettings
    private let rule: any MatchRule
    private let metrics: Metrics
    private let logger: Logger
    private weak var registry: ShardRegistry?

    private let lock = NSLock()
    private var queue: [MatchTicket] = []
    /// Players taken into a group whose shard is being started (they count as queued).
    private var forming: Set<String> = []
    /// Player → the shard it was matched into, until acked.
    private var assignments: [String: String] = [:]
    private var made = 0
    private var matched = MatchedShards()
    /// The most matched shards at once (`MatchmakerSettings.shardCap`).
    private let shardCap: Int
    private var loop: Task<Void, Never>?
    private var stopped = false

    init(settings: MatchmakerSettings, sim: String?, shardConfig: JSONValue, shardSettings: ShardSettings, shardCap: Int,
         rule: (any MatchRule)? = nil, metrics: Metrics, logger: Logger) {
        self.settings = settings
        self.shardCap = shardCap
        self.sim = sim
        self.shardConfig = shardConfig
        self.shardSettings = shardSettings
        self.rule = rule ?? FixedSizeMatch(size: { [settings] in settings.size(of: $0) }) as any MatchRule
        self.metrics = metrics
        self.logger = logger
    }

    /// Starts the loop, forming groups into `registry`'s shards.
    func start(_ registry: ShardRegistry) {
        self.registry = registry
        let interval = UInt64(settings.intervalMs) * 1_000_000
        loop = Task.detached { [weak self] in
            while true {
                try? await Task.sleep(nanoseconds: interval)
                guard let self, !self.isStopped else { return }
                await self.round()
            }
        }
    }

    func stop() {
        let l = lock.withLock { () -> Task<Void, Never>? in
            stopped = true
            return loop
        }
        l?.cancel()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    // MARK: The player's calls

    /// Puts `player` in the queue with `criteria` (a JSON object; `mode` a string, default
    /// "default"), unless it already waits there; returns its status.
    package func enqueue(player: String, criteria: JSONValue) throws(HostError) -> JSONValue {
        guard sim != nil else {
            throw HostError(status: 503, code: "MATCHMAKER_UNAVAILABLE",
                            message: "the matchmaker has no sim to start: set PYLON_MATCH_SIM to one of the loaded sims")
        }
        guard criteria.objectValue != nil else {
            throw HostError.badRequest("INVALID_CRITERIA", #"criteria is a JSON object, e.g. {"mode": "duel"}"#)
        }
        guard JSONWriter.encode(criteria).count <= Self.maxCriteriaBytes else {
            throw HostError(status: 413, code: "CRITERIA_TOO_LARGE", message: "criteria are at most \(Self.maxCriteriaBytes) bytes of JSON; send less")
        }
        let mode: String
        switch criteria["mode"] {
        case nil, .null?: mode = "default"
        case let .string(m)? where !m.isEmpty && m.utf8.count <= Self.maxModeBytes: mode = m
        default: throw HostError.badRequest("INVALID_CRITERIA", "criteria.mode is a string of 1..\(Self.maxModeBytes) bytes")
        }
        let now = TickScheduler.now()
        let refused: HostError? = lock.withLock {
            if let shard = assignments[player] {
                return HostError(status: 409, code: "ALREADY_MATCHED",
                                 message: "you were matched into shard \(shard); ack it (POST /api/shards/matchmaker/ack) before queueing again")
            }
            if let shard = matched.unjoined(of: player) {
                return HostError(status: 409, code: "MATCH_NOT_JOINED",
                                 message: "your match \(shard) has not been joined yet: join it (its stream or the shard WebSocket), or queue again once it is released, \(Int(settings.joinGraceSeconds)) s after the match (PYLON_MATCH_JOIN_GRACE_SECS)")
            }
            if forming.contains(player) || queue.contains(where: { $0.player == player }) { return nil }
            guard queue.count + forming.count < settings.queueMax else {
                return HostError(status: 503, code: "MATCHMAKER_FULL",
                                 message: "the matchmaker queue holds its \(settings.queueMax) players (PYLON_MATCH_QUEUE_MAX); try again later")
            }
            queue.append(MatchTicket(player: player, mode: mode, criteria: criteria, since: now))
            matched.requeued(player)
            metrics.set("matchmaker_queued", Double(queue.count))
            return nil
        }
        if let refused { throw refused }
        return status(player: player)
    }

    /// `{"status":"idle"}`, `{"status":"queued","position","waiting_secs"}` (position from
    /// 1 among the players waiting for the same mode) or `{"status":"matched","shard_id"}`.
    package func status(player: String) -> JSONValue {
        let now = TickScheduler.now()
        return lock.withLock {
            if let shard = assignments[player] { return .object([("status", "matched"), ("shard_id", .string(shard))]) }
            if forming.contains(player) { return Self.queued(position: 1, since: now, now: now) }
            guard let i = queue.firstIndex(where: { $0.player == player }) else { return .object([("status", "idle")]) }
            let mine = queue[i]
            let ahead = queue[..<i].reduce(0) { $0 + ($1.mode == mine.mode ? 1 : 0) }
            return Self.queued(position: ahead + 1, since: mine.since, now: now)
        }
    }

    private static func queued(position: Int, since: Int64, now: Int64) -> JSONValue {
        .object([("status", "queued"), ("position", .int(Int64(position))), ("waiting_secs", .int(max(0, now - since) / 1_000_000_000))])
    }

    /// Takes `player` out of the queue; false when it was not waiting.
    package func dequeue(player: String) -> Bool {
        lock.withLock {
            guard let i = queue.firstIndex(where: { $0.player == player }) else { return false }
            queue.remove(at: i)
            metrics.set("matchmaker_queued", Double(queue.count))
            return true
        }
    }

    /// Clears `player`'s assignment; false when it had none.
    package func ack(player: String) -> Bool {
        lock.withLock { assignments.removeValue(forKey: player) != nil }
    }

    // MARK: The loop

    /// One round: stop matches nobody joined in time, expire, group, start a shard per group
    /// (while the matchmaker's share of shards has room; other groups wait on), assign;
    /// assignments to shards that are gone are dropped.
    func round() async {
        guard let registry, let sim else { return }
        releaseMatches(registry)
        var room = lock.withLock { shardCap - matched.running }
        // Groups that got no shard this round, in the order they were taken.
        var unserved: [[MatchTicket]] = []
        for group in takeGroups() {
            guard room > 0 else {
                unserved.append(group)
                continue
            }
            let id = nextID()
            do {
                let shard = try await registry.create(sim: sim, id: id, config: shardConfig, settings: shardSettings,
                                                      roster: ShardRoster(group.map(\.player)))
                room -= 1
                let deadline = TickScheduler.now() + Int64(settings.joinGraceSeconds * 1e9)
                lock.withLock {
                    for t in group { assignments[t.player] = shard.id }
                    for t in group { forming.remove(t.player) }
                    matched.started(shard, players: group.map(\.player), deadline: deadline)
                }
                metrics.add("matchmaker_matches_total", 1)
                logger.info("matchmaker: shard \(shard.id) for \(group.count) player(s) of mode \(group.first?.mode ?? "default")")
            } catch {
                unserved.append(group)
                metrics.add("matchmaker_failures_total", 1)
                logger.warning("matchmaker: could not start a shard of \(sim) for a group (\(error)); its players wait on")
            }
        }
        requeue(unserved)
        let live = Set(registry.all.map(\.id))
        lock.withLock { assignments = assignments.filter { live.contains($0.value) } }
    }

    /// Stops the matched shards nobody joined within the grace and the joined ones their
    /// players left (`MatchedShards.sweep`); their players' assignments go with them at the
    /// end of the round.
    private func releaseMatches(_ registry: ShardRegistry) {
        let live = Set(registry.all.map(\.id))
        let grace = Int64(settings.joinGraceSeconds * 1e9)
        let released = lock.withLock { matched.sweep(live: live, now: TickScheduler.now(), grace: grace) }
        for (shard, why) in released {
            shard.stop(why.reason(grace: Int(settings.joinGraceSeconds)), failed: false)
            metrics.add(why.metric, 1)
        }
    }

    /// Puts the groups that got no shard back at the front of the queue, together and in
    /// the order they were taken, their waiting time kept. (One at a time at the front
    /// reversed them: every round without room swapped who would be matched first.)
    private func requeue(_ groups: [[MatchTicket]]) {
        guard !groups.isEmpty else { return }
        lock.withLock {
            let tickets = groups.flatMap { $0 }
            for t in tickets { forming.remove(t.player) }
            queue.insert(contentsOf: tickets, at: 0)
        }
    }

    /// Under the lock: drops expired tickets, then takes the rule's groups out of the queue
    /// (only distinct players who are waiting; anything else the rule returns is ignored).
    private func takeGroups() -> [[MatchTicket]] {
        let now = TickScheduler.now()
        let limit = Int64(settings.maxWaitSeconds * 1e9)
        return lock.withLock {
            let before = queue.count
            queue.removeAll { now - $0.since > limit }
            if queue.count < before { metrics.add("matchmaker_expired_total", Int64(before - queue.count)) }
            var waiting: [String: MatchTicket] = [:]
            for t in queue { waiting[t.player] = t }
            var groups: [[MatchTicket]] = []
            for g in rule.groups(queue) {
                let tickets = g.compactMap { waiting.removeValue(forKey: $0) }
                if tickets.isEmpty { continue }
                guard tickets.count == g.count else {
                    for t in tickets { waiting[t.player] = t }
                    continue
                }
                groups.append(tickets)
            }
            let taken = Set(groups.flatMap { $0.map(\.player) })
            queue.removeAll { taken.contains($0.player) }
            forming.formUnion(taken)
            metrics.set("matchmaker_queued", Double(queue.count))
            return groups
        }
    }

    /// `match_<unix seconds in hex>_<n>`, n counting this host's matches.
    private func nextID() -> String {
        let n = lock.withLock { () -> Int in
            made += 1
            return made
        }
        return "match_" + String(Int(Date().timeIntervalSince1970), radix: 16) + "_\(n)"
    }
}
