import Foundation
import PylonCore
import PylonJSON

extension ShardRegistry {
    /// At start, before serving: every saved shard back from `_pylon_shard_state`, restored
    /// by its sim and ticking on from its saved tick. A row that cannot be restored (its sim
    /// is not loaded, its state or settings are not ones the host and the sim wrote) is
    /// logged and skipped, and kept for a host that can; the host starts either way. A
    /// shard with a roster comes back with its players (`ShardRoster`), or not at all.
    package func restoreSaved() {
        guard let persistence else { return }
        let saved: [ShardPersistence.Saved]
        do {
            saved = try persistence.loadAll()
        } catch {
            logger.error("shards: the saved shards could not be read (\(error)); none was restored")
            return
        }
        var restored = 0
        for row in saved {
            func skip(_ why: String) {
                metrics.add("shard_restores_failed_total", 1)
                logger.error("shard \(row.id.prefix(128)): its saved state (tick \(row.tick)) was not restored: \(why); skipped, the row is kept")
            }
            guard let sim = sims[row.sim] else { skip("no loaded sim is named \(row.sim.prefix(64))"); continue }
            guard ShardNames.valid(row.id), get(row.id) == nil else { skip("the id is not a shard id, or taken"); continue }
            guard all.count < maxShards else { skip("this host runs its \(maxShards) shards (PYLON_SHARD_MAX)"); continue }
            guard let bytes = Data(base64Encoded: row.state), row.tick >= 0,
                  let json = try? JSONParser.parse(row.settings), let settings = try? ShardSettings.parse(json),
                  let config = try? JSONParser.parse(row.config) else {
                skip("the row is corrupt (its state is not base64, or its settings are not the shard's)")
                continue
            }
            let roster: ShardRoster?
            do {
                roster = try ShardRoster.saved(in: json)
            } catch {
                skip("\(error.code): \(error.message)")  // never back as a shard open to all
                continue
            }
            switch sim.restore([UInt8](bytes)) {
            case let .failure(e): skip("sim \(sim.name) refused it: \(e.code): \(e.message)")
            case let .success(state):
                let shard = Shard(id: row.id, sim: sim, settings: settings, roster: roster, state: state, metrics: metrics, tick: UInt64(row.tick))
                run(shard, config: config, reserved: false)
                restored += 1
                logger.info("shard \(row.id): restored at tick \(row.tick) (sim \(sim.name))")
            }
        }
        if !saved.isEmpty { logger.info("shards: \(restored) of \(saved.count) saved shard(s) restored") }
    }
}
