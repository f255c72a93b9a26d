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
    /// of its own would wait for ever). The cache's RESP listener has its share taken out
    /// first (`respClientCap`).
    /// HTTP listeners that share the open-file budget (what is left after the cache's and the
    /// shard WebSocket's shares): the API port and the compat ports when on.
    package static func listenerCount(_ config: HostConfig) -> Int { config.compatPorts ? 3 : 1 }

    package static func connectionCap(_ configured: Int?, listeners: Int) -> Int {
        guard let files = openFileBudget() else { return configured ?? 1024 }
        let budget = max(16, (files - respClientCap() - shardSocketCap()) / max(1, listeners))
        return min(configured ?? budget, budget)
    }

    /// The most clients the cache's RESP listener may hold (the plugin's `maxclients_cap`): a
    /// tenth of the open-file budget, at least 16. Its clients are usually a few app servers'
    /// pools, while the HTTP listeners hold every realtime subscriber.
    package static func respClientCap() -> Int {
        guard let files = openFileBudget() else { return 1024 }
        return max(16, files / 10)
    }

    /// The most connections the shard WebSocket (ShardWS) may hold (its `max_connections`;
    /// one over it is answered 429 and closed at once, uncounted: `TurnAway`): a tenth of
    /// the open-file budget, at least 16, and never above Pylon-sized `shardSocketDefault`. Its own cap, so a flood of shard sockets cannot take the
    /// descriptors the HTTP listeners, the store and the plugins need.
    package static func shardSocketCap() -> Int {
        guard let files = openFileBudget() else { return 1024 }
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
