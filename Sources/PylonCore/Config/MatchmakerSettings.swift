import PylonJSON

/// The host's matchmaker (`/api/shards/matchmaker/*`, pylon-aux.md §5.6): which sim its
/// shards run and with what, how many players make a group (per `criteria.mode`), how long
/// a player may wait, how often groups are formed, and how many players may wait at once.
public struct MatchmakerSettings: Sendable, Equatable {
    /// The sim of matched shards (`PYLON_MATCH_SIM`); nil: the only loaded sim (with several
    /// loaded and none named, the matchmaker answers 503 `MATCHMAKER_UNAVAILABLE`).
    public var sim: String?
    /// Players per group when their mode has no size of its own (`PYLON_MATCH_SIZE`).
    public var size = 2
    /// Group sizes by mode (`PYLON_MATCH_MODES`, e.g. "duel=2,squad=4").
    public var modes: [String: Int] = [:]
    /// A matched shard's create body without `sim` and `id` (`PYLON_MATCH_CONFIG`, a JSON
    /// object: `{"config": {the sim's config}, "tick_rate_hz"?, …}`).
    public var shard: JSONValue = .object([])
    /// The longest a player waits before it leaves the queue (`PYLON_MATCH_MAX_WAIT_SECS`;
    /// Pylon's 60 s).
    public var maxWaitSeconds = 60.0
    /// How often groups are formed (`PYLON_MATCH_INTERVAL_MS`; Pylon's 1 s).
    public var intervalMs = 1_000
    /// Players waiting at once (`PYLON_MATCH_QUEUE_MAX`); past it enqueue answers 503
    /// `MATCHMAKER_FULL`.
    public var queueMax = 10_000
    /// How long a matched shard waits for its first subscriber (`PYLON_MATCH_JOIN_GRACE_SECS`):
    /// one nobody joins by then is stopped, so its slot is not held for its whole idle time.
    public var joinGraceSeconds = 30.0
    /// The most matched shards running at once (`PYLON_MATCH_SHARD_MAX`); nil: half of
    /// `PYLON_SHARD_MAX` (at least 1), so the matchmaker never takes every shard slot from
    /// the admin and the functions. Past it, groups wait in the queue.
    public var maxShards: Int?
    /// The most players in one group (a mode's size is checked against it).
    public static let maxGroup = 1_024

    public init() {}

    /// The most matched shards at once on a host that runs at most `shardMax` shards.
    public func shardCap(of shardMax: Int) -> Int { min(shardMax, maxShards ?? max(1, shardMax / 2)) }

    /// The group size for `mode`.
    public func size(of mode: String) -> Int { modes[mode] ?? size }
}
