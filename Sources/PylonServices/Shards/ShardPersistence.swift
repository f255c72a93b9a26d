import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON

/// Shards that survive a restart (pylon-aux.md §5.8's `persist_every_ticks` and
/// `restore_or_init`, done by the host): a shard with `persist_every_ticks` > 0 hands its
/// state to the sim's `save` every that many ticks, and the bytes go to
/// `_pylon_shard_state` in the app's store; at start the host reads the table back, has
/// each sim `restore` its states, and the shards tick on from their saved tick.
///
/// The tick thread only calls `save` (the sim's state may be touched only inside a turn)
/// and queues the write; the writer thread encodes and stores it. A shard has at most one
/// save in flight: a turn that comes while one is pending skips its save
/// (`shard_saves_skipped_total`), so a slow store never piles up states.
package final class ShardPersistence: @unchecked Sendable {
    let store: StoreThreads
    let dialect: SQLDialect
    let logger: Logger
    let metrics: Metrics

    package init(store: StoreThreads, dialect: SQLDialect, logger: Logger, metrics: Metrics) {
        self.store = store
        self.dialect = dialect
        self.logger = logger
        self.metrics = metrics
    }

    package static func createSQL(_ d: SQLDialect) -> [String] { d.createSystemTable(SystemTables.shardState) }

    private var table: String { dialect.quote(SystemTables.shardState.name) }

    var upsertSQL: String {
        "INSERT INTO \(table) (id, sim, config, settings, tick, state, updated_at) VALUES (\((1...7).map(dialect.placeholder).joined(separator: ", "))) "
            + "ON CONFLICT (id) DO UPDATE SET sim = excluded.sim, config = excluded.config, settings = excluded.settings, "
            + "tick = excluded.tick, state = excluded.state, updated_at = excluded.updated_at"
    }

    var deleteSQL: String { "DELETE FROM \(table) WHERE id = \(dialect.placeholder(1))" }

    /// One saved shard, as read back.
    struct Saved: Sendable {
        let id: String
        let sim: String
        let config: String
        let settings: String
        let tick: Int64
        let state: String
    }

    /// Every saved shard (at start, before serving: waits for the read).
    func loadAll() throws -> [Saved] {
        let sql = "SELECT id, sim, config, settings, tick, state FROM \(table) ORDER BY id"
        let done = DispatchSemaphore(value: 0)
        let box = LoadBox()
        store.read({ conn in
            try conn.execute(sql).rows.compactMap { r -> Saved? in
                guard let id = r.first?.textValue, let sim = r.at(1).textValue, let config = r.at(2).textValue,
                      let settings = r.at(3).textValue, let tick = r.at(4).intValue, let state = r.at(5).textValue else { return nil }
                return Saved(id: id, sim: sim, config: config, settings: settings, tick: tick, state: state)
            }
        }, done: { r in
            box.result = r
            done.signal()
        })
        done.wait()
        return try box.result!.get()
    }

    private final class LoadBox: @unchecked Sendable {
        var result: Result<[Saved], Error>?
    }
}

/// One shard's link to `ShardPersistence`: saves in order, at most one in flight, none after
/// the shard ended (so a late save never brings back a row its end deleted: both are queued
/// on the store's one writer under `lock`, which keeps their order).
final class ShardSaver: @unchecked Sendable {
    private let persistence: ShardPersistence
    private let config: String
    /// Orders queued saves against `end`.
    private let lock = NSLock()
    private var ended = false
    /// `end` kept the row (the host is stopping): the final save may still write it.
    private var kept = false
    /// A save is queued or running (its own lock: a write's `done` may run on the queueing
    /// thread, inside `lock`).
    private let flight = NSLock()
    private var inFlight = false

    init(_ persistence: ShardPersistence, config: JSONValue) {
        self.persistence = persistence
        self.config = JSONWriter.string(config)
    }

    private var busy: Bool { flight.withLock { inFlight } }

    /// Inside `shard`'s turn, after tick `tick`: `save`, then queue the write.
    func save(_ shard: Shard, state: OpaquePointer, tick: UInt64) {
        guard !lock.withLock({ ended }), !busy else {
            persistence.metrics.add("shard_saves_skipped_total", 1)
            return
        }
        guard let params = encode(shard, state: state, tick: tick) else { return }
        lock.withLock {
            guard !ended else { return }
            queue(shard, params, tick: tick) {}
        }
    }

    /// The host is stopping and `shard`'s turns are over: saves its state once more and
    /// waits (at most `timeout` seconds) for the write to commit, so a restart goes on from
    /// the last tick instead of the last periodic save. Queued behind any save in flight on
    /// the one writer, so it is the newest row.
    func saveFinal(_ shard: Shard, state: OpaquePointer, tick: UInt64, timeout: TimeInterval = 5) {
        guard lock.withLock({ !ended || kept }), let params = encode(shard, state: state, tick: tick) else { return }
        let done = DispatchSemaphore(value: 0)
        lock.withLock { queue(shard, params, tick: tick) { done.signal() } }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            persistence.logger.warning("shard \(shard.id): its last state (tick \(tick)) was not stored within \(Int(timeout)) s of the stop; it restarts from its last periodic save")
        }
    }

    /// The row's values for the sim's `save` of `state`, or nil (logged) when it failed.
    private func encode(_ shard: Shard, state: OpaquePointer, tick: UInt64) -> [SQLValue]? {
        let p = persistence
        switch shard.sim.save(state) {
        case let .success(bytes):
            return [.text(shard.id), .text(shard.sim.name), .text(config), .text(JSONWriter.string(.object(shard.savedSettings))),
                    .int(Int64(clamping: tick)), .text(Data(bytes).base64EncodedString())]
        case let .failure(e):
            p.metrics.add("shard_saves_failed_total", 1)
            p.logger.warning("shard \(shard.id): sim \(shard.sim.name) could not save its state at tick \(tick) (\(e.code): \(e.message)); the last save stays")
            return nil
        }
    }

    /// Queues the upsert (under `lock`); `finished` runs once it committed or failed.
    private func queue(_ shard: Shard, _ params: [SQLValue], tick: UInt64, finished: @escaping @Sendable () -> Void) {
        let p = persistence, sql = p.upsertSQL
        flight.withLock { inFlight = true }
        p.store.write(replayable: true, { tx in
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try tx.write(sql, params + [.int(now)])
        }, done: { [self] r in
            flight.withLock { inFlight = false }
            if case let .failure(e) = r {
                p.metrics.add("shard_saves_failed_total", 1)
                p.logger.warning("shard \(shard.id): its state at tick \(tick) could not be stored (\(e)); the last save stays")
            } else {
                p.metrics.add("shard_saves_total", 1)
            }
            finished()
        })
    }

    /// The shard has stopped: no more saves, and its row goes unless `keep` (the host is
    /// stopping, and restores it at the next start).
    func end(_ shard: Shard, keep: Bool) {
        let p = persistence, sql = p.deleteSQL, id = shard.id
        lock.withLock {
            guard !ended else { return }
            ended = true
            kept = keep
            guard !keep else { return }
            p.store.write(replayable: true, { tx in try tx.write(sql, [.text(id)]) }, done: { r in
                if case let .failure(e) = r { p.logger.warning("shard \(id): its saved state could not be deleted (\(e)); it comes back at the next start") }
            })
        }
    }
}
