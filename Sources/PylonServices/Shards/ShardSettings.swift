import Foundation
import PylonCore
import PylonJSON

/// One shard's settings (Pylon's `ShardConfig`, pylon-aux.md §5.2, same defaults), given at
/// the top level of `POST /api/shards` beside `sim`, `id` and the sim's `config`.
package struct ShardSettings: Sendable, Equatable {
    /// Ticks per second; 0: event-driven (a tick only when inputs or subscribers are waiting,
    /// looked for every 10 ms).
    package var tickRateHz = 20
    /// The most subscribers at once (0: no limit of the shard's own).
    package var maxSubscribers = 256
    /// Ticks with no input and no subscriber after which the shard stops and is removed
    /// (0: never). For an event-driven shard each 10 ms look counts as one.
    package var idleTicksBeforeShutdown = 1800
    /// Inputs waiting for the next tick; past it an input is refused (429).
    package var maxInputQueue = 10_000
    /// Save the state every this many ticks (0: never; the sim needs save and restore). Not
    /// given: the host's `PYLON_SHARD_PERSIST_TICKS` (see `persistGiven`).
    package var persistEveryTicks = 0
    /// Whether the create request set `persist_every_ticks` itself.
    package var persistGiven = false

    package init() {}

    static let maxTickRate = 1000
    static let maxQueue = 1_000_000
    /// How often an event-driven shard looks for work (Pylon: every 10 ms).
    static let eventPollNanos: Int64 = 10_000_000

    /// The interval between scheduled ticks, in nanoseconds (the event poll when 0 Hz).
    var intervalNanos: Int64 { tickRateHz == 0 ? Self.eventPollNanos : 1_000_000_000 / Int64(tickRateHz) }

    /// The settings in a create request's body; unknown keys are the caller's business
    /// (`sim`, `id`, `config`), every known one is checked.
    package static func parse(_ body: JSONValue) throws(HostError) -> ShardSettings {
        var s = ShardSettings()
        func int(_ key: String, _ range: ClosedRange<Int>) throws(HostError) -> Int? {
            guard let v = body[key], v != .null else { return nil }
            guard let n = v.intValue, range.contains(Int(n)) else {
                throw HostError.badRequest("INVALID_SHARD_CONFIG", "\(key) must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return Int(n)
        }
        if let n = try int("tick_rate_hz", 0...maxTickRate) { s.tickRateHz = n }
        if let n = try int("max_subscribers", 0...1_000_000) { s.maxSubscribers = n }
        if let n = try int("idle_ticks_before_shutdown", 0...Int(Int32.max)) { s.idleTicksBeforeShutdown = n }
        if let n = try int("max_input_queue", 1...maxQueue) { s.maxInputQueue = n }
        if let n = try int("persist_every_ticks", 0...Int(Int32.max)) {
            s.persistEveryTicks = n
            s.persistGiven = true
        }
        return s
    }

    package var json: [(String, JSONValue)] {
        [("tick_rate_hz", .int(Int64(tickRateHz))), ("max_subscribers", .int(Int64(maxSubscribers))),
         ("idle_ticks_before_shutdown", .int(Int64(idleTicksBeforeShutdown))), ("max_input_queue", .int(Int64(maxInputQueue))),
         ("persist_every_ticks", .int(Int64(persistEveryTicks)))]
    }
}

/// Ids of shards and subscribers: `RowID.isAddressable` (so they are safe in logs, URLs and
/// the sim's own keys).
package enum ShardNames {
    package static func valid(_ s: some StringProtocol) -> Bool { RowID.isAddressable(s) }
}
