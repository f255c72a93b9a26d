import Foundation
import Logging
import PylonCore
import PylonPlugins
import PylonJSON

/// The host's shards (pylon-aux.md §5, with the gaps Pylon leaves filled): the loaded sims
/// by name, the running shards by id, and the tick threads they share. A shard leaves the
/// registry when it stops — finished, idle, deleted, or stopped because its sim broke the
/// contract (logged as an error naming the shard, the sim and what it did).
///
/// Threads: any; the maps are under `lock`.
package final class ShardRegistry: @unchecked Sendable {
    package let sims: [String: SimPlugin]
    private let scheduler: TickScheduler
    let maxShards: Int
    let metrics: Metrics
    let logger: Logger
    private let lock = NSLock()
    private var shards: [String: Shard] = [:]
    /// Ids whose state is being created (so two creates of one id cannot both build one).
    private var reserved: Set<String> = []
    /// Sim calls outside a turn (`create`) may take a while: never on an event loop.
    private let queue = DispatchQueue(label: "pylon.shards.create", attributes: .concurrent)
    /// The matchmaker, forming groups into shards of this registry.
    package let matchmaker: Matchmaker
    /// Where persisting shards save their state (nil: nowhere, e.g. without a store).
    let persistence: ShardPersistence?
    /// `PYLON_SHARD_PERSIST_TICKS`: the save interval of shards created without one.
    private let persistTicks: Int
    /// Set once the host stops: shards stopped from now on keep their saved state.
    private var stopping = false

    package init(sims served: [ServedCapability], config: HostConfig, metrics: Metrics, logger: Logger,
                 persistence: ShardPersistence? = nil) throws(HostError) {
        var sims: [String: SimPlugin] = [:]
        for s in served {
            let sim = try SimPlugin(s)
            if let other = sims[sim.name] {
                throw HostError(status: 500, code: "SIM_NAME_TAKEN",
                                message: "plugins \(other.plugin.id) and \(sim.plugin.id) both serve the sim \"\(sim.name)\"; remove one of them from the plugins folder")
            }
            sims[sim.name] = sim
        }
        self.sims = sims
        matchmaker = try Self.matchmaker(config, sims: sims, metrics: metrics, logger: logger)
        let threads = config.shardThreads > 0 ? config.shardThreads : max(1, ProcessInfo.processInfo.activeProcessorCount)
        scheduler = TickScheduler(threads: threads, budgetMs: config.shardTickBudgetMs, metrics: metrics, logger: logger)
        maxShards = config.shardMax
        self.persistence = persistence
        persistTicks = config.shardPersistTicks
        self.metrics = metrics
        self.logger = logger
        metrics.set("shards_running", 0)
        logger.info("shards: sims \(sims.keys.sorted().joined(separator: ", ")); \(threads) tick thread(s), \(config.shardTickBudgetMs) ms budget per turn, at most \(maxShards) shards")
        matchmaker.start(self)
    }

    package func get(_ id: String) -> Shard? { lock.withLock { shards[id] } }

    /// The shard `id` as `auth` may see it: a shard with a roster of which `auth` is no player
    /// is answered as no shard at all (the same 404), so other matches' or rooms' ids are not
    /// confirmed.
    package func get(_ id: String, for auth: AuthContext) throws(HostError) -> Shard {
        guard let s = get(id), s.visible(to: auth) else { throw Self.notFound(id) }
        return s
    }

    package static func notFound(_ id: some StringProtocol) -> HostError {
        HostError(status: 404, code: "SHARD_NOT_FOUND", message: "no shard \(id.prefix(128)) is running; list them with GET /api/shards (admin)")
    }

    package var all: [Shard] { lock.withLock { shards.values.sorted { $0.id < $1.id } } }

    /// Creates a shard of `simName` from the sim's `config` and starts ticking it.
    /// `id` nil: a random one. `roster`: the only players the shard admits (nil: any the sim does).
    package func create(sim simName: String, id: String?, config: JSONValue, settings given: ShardSettings,
                        roster: ShardRoster? = nil) async throws -> Shard {
        guard let sim = sims[simName] else {
            throw HostError(status: 404, code: "SIM_NOT_FOUND",
                            message: "no loaded sim is named \"\(simName.prefix(64))\"; loaded sims: \(sims.keys.sorted().joined(separator: ", "))")
        }
        let settings = try persisting(given, sim)
        let id = id ?? "shard_" + (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        guard ShardNames.valid(id) else {
            throw HostError.badRequest("INVALID_SHARD_ID", "a shard id is 1..128 of letters, digits, '_', '-', '.', ':' and '@'")
        }
        let refused = lock.withLock { () -> HostError? in
            guard shards[id] == nil && !reserved.contains(id) else {
                return HostError(status: 409, code: "SHARD_EXISTS", message: "a shard \(id) is already running; pick another id or delete it first")
            }
            guard shards.count + reserved.count < maxShards else {
                return HostError(status: 503, code: "SHARD_LIMIT", message: "this host runs its \(maxShards) shards (PYLON_SHARD_MAX); delete one or try later")
            }
            reserved.insert(id)
            return nil
        }
        if let refused { throw refused }
        let bytes = JSONWriter.encode(config)
        let made: Result<OpaquePointer, SimError> = await withCheckedContinuation { c in
            queue.async { c.resume(returning: sim.create(config: bytes)) }
        }
        let state: OpaquePointer
        switch made {
        case let .success(s): state = s
        case let .failure(e):
            lock.withLock { _ = reserved.remove(id) }
            throw HostError.badRequest(e.code.isEmpty ? "SIM_CREATE_FAILED" : e.code, "sim \(sim.name): \(e.message)")
        }
        let shard = Shard(id: id, sim: sim, settings: settings, roster: roster, state: state, metrics: metrics)
        run(shard, config: config, reserved: true)
        logger.info("shard \(id): started (sim \(sim.name), \(settings.tickRateHz == 0 ? "event-driven" : "\(settings.tickRateHz) Hz"))")
        return shard
    }

    /// Puts `shard` in the registry (in place of its reservation) and starts ticking it;
    /// a persisting one gets its saver.
    func run(_ shard: Shard, config: JSONValue, reserved wasReserved: Bool) {
        shard.onStop = { [weak self] shard, reason, failed in self?.stopped(shard, reason, failed) }
        if let persistence, shard.settings.persistEveryTicks > 0 { shard.saver = ShardSaver(persistence, config: config) }
        let count = lock.withLock { () -> Int in
            if wasReserved { reserved.remove(shard.id) }
            shards[shard.id] = shard
            return shards.count
        }
        metrics.set("shards_running", Double(count))
        scheduler.add(shard)
    }

    /// `settings` with the save interval in force: the one given (refused when the sim
    /// cannot save), else the host's default for sims that can.
    private func persisting(_ settings: ShardSettings, _ sim: SimPlugin) throws(HostError) -> ShardSettings {
        var s = settings
        let able = sim.persists && persistence != nil
        if s.persistGiven {
            if s.persistEveryTicks > 0 && !able {
                throw HostError.badRequest("SIM_CANNOT_PERSIST", "the sim \(sim.name) has no save and restore slots; create its shards without persist_every_ticks")
            }
        } else {
            s.persistEveryTicks = able ? persistTicks : 0
        }
        return s
    }

    /// Stops and removes the shard `id`; false when there is none.
    package func delete(_ id: String) -> Bool {
        guard let s = get(id) else { return false }
        s.stop("deleted", failed: false)
        return true
    }

    private func stopped(_ shard: Shard, _ reason: String, _ failed: Bool) {
        let (count, keep) = lock.withLock { () -> (Int, Bool) in
            if shards[shard.id] === shard { shards[shard.id] = nil }
            return (shards.count, stopping)
        }
        shard.saver?.end(shard, keep: keep)
        metrics.set("shards_running", Double(count))
        if failed {
            metrics.add("shards_failed_total", 1)
            logger.error("shard \(shard.id) stopped: sim \(shard.sim.name) (\(shard.sim.plugin.id)) broke the contract: \(reason); the other shards keep ticking")
        } else {
            logger.info("shard \(shard.id) stopped: \(reason)")
        }
    }

    package func shutdown() {
        lock.withLock { stopping = true }
        matchmaker.stop()
        scheduler.shutdown()
        let shards = all
        for s in shards { s.stop(Shard.hostStopping, failed: false) }
        // A turn still running releases (and finally saves) its shard when it returns: wait
        // for it, so the store is not shut down under that save.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, shards.contains(where: { !$0.released }) { usleep(2_000) }
    }
}
