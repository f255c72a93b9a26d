import Logging
import PylonCore
import PylonJSON

extension ShardRegistry {
    /// The matchmaker from the `PYLON_MATCH_*` settings, checked now so that a host with a
    /// wrong setting does not start: the sim must be loaded, the shard body valid.
    static func matchmaker(_ config: HostConfig, sims: [String: SimPlugin], metrics: Metrics, logger: Logger) throws(HostError) -> Matchmaker {
        let s = config.matchmaker
        let sim = s.sim ?? (sims.count == 1 ? sims.keys.first : nil)
        if let named = s.sim, sims[named] == nil {
            throw HostError(status: 500, code: "CONFIG_INVALID",
                            message: "PYLON_MATCH_SIM=\(named) names no loaded sim; loaded sims: \(sims.keys.sorted().joined(separator: ", "))")
        }
        let settings: ShardSettings
        do {
            settings = try ShardSettings.parse(s.shard)
        } catch {
            throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_MATCH_CONFIG: \(error.message)")
        }
        let simConfig = s.shard["config"] ?? .null
        guard simConfig == .null || simConfig.objectValue != nil else {
            throw HostError(status: 500, code: "CONFIG_INVALID", message: #"PYLON_MATCH_CONFIG: "config" must be an object (the sim's own settings)"#)
        }
        if sim == nil { logger.info("matchmaker: off (several sims are loaded and PYLON_MATCH_SIM names none)") }
        return Matchmaker(settings: s, sim: sim, shardConfig: simConfig == .null ? .object([]) : simConfig,
                          shardSettings: settings, shardCap: s.shardCap(of: config.shardMax), metrics: metrics, logger: logger)
    }
}
