import Foundation

/// How many connections the host's listeners may hold, from the open-file limit. Read by
/// the edge (each listener's cap) and the wiring (the cache's share, raising the limit).
package enum FileBudget {
    /// Open connections per listener: `configured`, but never more than the open-file limit
    /// allows with every listener full and `reservedDescriptors` left for the store,
    /// plugins and logs. At the cap a listener stops accepting (Hummingbird's
    /// `MaximumAvailableConnections`) and clients wait in the backlog, so connections never
    /// exhaust the descriptors: at EMFILE NIO only backs off accepting, but other code does
    /// not survive it (libdispatch, which runs Swift's task pool on Linux, aborts the process
    /// when its worker monitor cannot open /proc). Per listener because that is what
    /// Hummingbird's handler can resume (with a shared count a listener with no connections
    /// of its own would wait for ever). The other listeners the host runs (`OtherListeners`)
    /// have their shares taken out first. `files`: the budget (nil: unknown).
    package static func connectionCap(_ configured: Int?, listeners: Int, others: OtherListeners,
                                      files: Int? = openFileBudget()) -> Int {
        guard let files else { return configured ?? 1024 }
        let shares = (others.cache ? respClientCap(files: files) : 0) + (others.shardSocket ? shardSocketCap(files: files) : 0)
        let budget = max(16, (files - shares) / max(1, listeners))
        return min(configured ?? budget, budget)
    }

    /// HTTP listeners that share the open-file budget (what is left after the other
    /// listeners' shares): the API port and the compat ports when on.
    package static func listenerCount(_ config: HostConfig) -> Int { config.compatPorts ? 3 : 1 }

    /// The listeners beside HTTP's that hold connections of their own, each taking its share
    /// of the budget before the HTTP listeners: only those the host runs, so a host without
    /// the cache or the shard WebSocket gives their shares to HTTP.
    package struct OtherListeners: Sendable, Equatable {
        /// The cache's RESP listener (a plugin serves `pylon.cache/1`): `respClientCap`.
        package var cache: Bool
        /// The shard WebSocket (a `pylon.shard.transport/1` plugin, started when a shard
        /// simulation is loaded too): `shardSocketCap`.
        package var shardSocket: Bool

        package init(cache: Bool, shardSocket: Bool) {
            self.cache = cache
            self.shardSocket = shardSocket
        }
    }

    /// The most clients the cache's RESP listener may hold (the plugin's `maxclients_cap`): a
    /// tenth of the open-file budget, at least 16. Its clients are usually a few app servers'
    /// pools, while the HTTP listeners hold every realtime subscriber.
    package static func respClientCap(files: Int? = openFileBudget()) -> Int {
        guard let files else { return 1024 }
        return max(16, files / 10)
    }

    /// The most connections the shard WebSocket (ShardWS) may hold (its `max_connections`;
    /// one over it is answered 429 and closed at once, uncounted: `TurnAway`): a tenth of
    /// the open-file budget, at least 16, and never above Pylon-sized `shardSocketDefault`. Its own cap, so a flood of shard sockets cannot take the
    /// descriptors the HTTP listeners, the store and the plugins need.
    package static func shardSocketCap(files: Int? = openFileBudget()) -> Int {
        guard let files else { return 1024 }
        return min(shardSocketDefault, max(16, files / 10))
    }

    package static let shardSocketDefault = 10_000

    /// The open-file limit less `reservedDescriptors`; nil when it cannot be read.
    package static func openFileBudget() -> Int? {
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0 else { return nil }
        return Int(clamping: min(UInt64(limit.rlim_cur), UInt64(Int32.max))) - reservedDescriptors
    }

    /// Raises the soft open-file limit to the hard one (as Go's runtime does): the default
    /// soft limit (often 1024) would cap connections far below what the system allows.
    package static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(openFiles, &limit)
    }

    #if canImport(Glibc)
    private static let openFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let openFiles = RLIMIT_NOFILE
    #endif

    package static let reservedDescriptors = 128
}
