import Foundation
import PylonPluginABI
import PylonCore
import PylonPlugins

/// The host's side of one `pylon.shard.sim/1` table: each call wrapped so that only C types
/// cross, the plugin's errors copied out bounded, and the bytes it hands back copied before
/// its callback returns. The thread rule (one call per state at a time) is the caller's
/// (`Shard`): this type holds no state of its own.
package final class SimPlugin: @unchecked Sendable {
    let table: UnsafePointer<pylon_shard_sim_v1>
    let instance: OpaquePointer
    package let plugin: LoadedPlugin
    /// The sim's name (`POST /api/shards {"sim": name}`).
    package let name: String

    package init(_ served: ServedCapability) throws(HostError) {
        let size = Int(served.table.load(as: UInt32.self))
        guard size >= MemoryLayout<pylon_shard_sim_v1>.size else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(served.plugin.id) returned a pylon.shard.sim/1 table of \(size) bytes, expected at least \(MemoryLayout<pylon_shard_sim_v1>.size); rebuild it against this host's header")
        }
        let t = served.table.assumingMemoryBound(to: pylon_shard_sim_v1.self)
        let name = t.pointee.name.map { String(cString: $0) } ?? ""
        guard Self.validName(name) else {
            throw HostError(status: 500, code: "SIM_NAME_INVALID",
                            message: "plugin \(served.plugin.id) names its sim \"\(name.prefix(80))\"; a sim name is 1..64 of a-z, 0-9, '_' and '-'")
        }
        let t0 = t.pointee
        guard t0.create != nil, t0.destroy != nil, t0.apply_input != nil, t0.tick != nil, t0.snapshot_for != nil,
              t0.is_finished != nil else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_MISSING",
                            message: "plugin \(served.plugin.id): its pylon.shard.sim/1 table leaves a required slot NULL (create, destroy, apply_input, tick, snapshot_for and is_finished are required)")
        }
        table = t
        instance = served.instance
        plugin = served.plugin
        self.name = name
    }

    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 }
    }

    /// Whether the sim can save and restore its states (both optional slots are set).
    package var persists: Bool { table.pointee.save != nil && table.pointee.restore != nil }

    /// A new state from `config` (JSON bytes), or the plugin's error.
    func create(config: [UInt8]) -> Result<OpaquePointer, SimError> {
        let capture = PluginErrorCapture()
        var out: OpaquePointer?
        let status = config.withUnsafeBufferPointer { c in
            c.withMemoryRebound(to: CChar.self) { cc in
                capture.withSink { table.pointee.create(instance, cc.baseAddress, cc.count, &out, $0) }
            }
        }
        guard status == PYLON_OK, let out else {
            return .failure(SimError(capture.failure(status == PYLON_OK ? PYLON_ERR_GENERIC : status, code: "SIM_CREATE_FAILED",
                                                     message: "the sim \(name) could not create a state from that config")))
        }
        return .success(out)
    }

    func destroy(_ state: OpaquePointer) { table.pointee.destroy(instance, state) }

    func applyInput(_ state: OpaquePointer, subscriber: String, input: [UInt8], receivedAt: Int64) -> PluginError? {
        let capture = PluginErrorCapture()
        let status = Self.withText(subscriber) { sid, sidLen in
            Self.withBytes(input) { inp, inpLen in
                capture.withSink { table.pointee.apply_input(instance, state, sid, sidLen, inp, inpLen, receivedAt, $0) }
            }
        }
        return status == PYLON_OK ? nil : capture.failure(status, code: "INPUT_REJECTED", message: "the sim rejected the input")
    }

    func tick(_ state: OpaquePointer, tick: UInt64, dtNanos: Int64) -> PluginError? {
        let capture = PluginErrorCapture()
        let status = capture.withSink { table.pointee.tick(instance, state, tick, dtNanos, $0) }
        return status == PYLON_OK ? nil : capture.failure(status, code: "SIM_TICK_FAILED", message: "tick returned status \(status)")
    }

    /// What `subscriber` sees: the plugin's bytes, copied (nil with the error when it
    /// failed or handed back nothing).
    func snapshot(_ state: OpaquePointer, subscriber: String) -> Result<[UInt8], SimError> {
        let capture = PluginErrorCapture()
        let sink = SimBytesSink()
        let status = Self.withText(subscriber) { sid, sidLen in
            capture.withSink { err in
                withExtendedLifetime(sink) {
                    table.pointee.snapshot_for(instance, state, sid, sidLen, simBytesReceived,
                                               Unmanaged.passUnretained(sink).toOpaque(), err)
                }
            }
        }
        guard status == PYLON_OK else {
            return .failure(SimError(capture.failure(status, code: "SIM_SNAPSHOT_FAILED", message: "snapshot_for returned status \(status)")))
        }
        if sink.tooLarge {
            return .failure(SimError(PluginError(code: "SIM_SNAPSHOT_TOO_LARGE", message: "snapshot_for returned more than \(PYLON_SIM_SNAPSHOT_MAX) bytes")))
        }
        guard let bytes = sink.bytes else {
            return .failure(SimError(PluginError(code: "SIM_SNAPSHOT_MISSING", message: "snapshot_for returned PYLON_OK without handing back a snapshot")))
        }
        return .success(bytes)
    }

    func isFinished(_ state: OpaquePointer) -> Bool { table.pointee.is_finished(instance, state) != 0 }

    /// nil: admitted. Without the plugin's slot, Pylon's default: the admin, or the user
    /// whose id is `subscriber`.
    func authorizeSubscribe(_ state: OpaquePointer, subscriber: String, auth: AuthContext, authJSON: [UInt8]) -> PluginError? {
        guard let f = table.pointee.authorize_subscribe else {
            if auth.isAdmin || (auth.userID != nil && auth.userID == subscriber) { return nil }
            return PluginError(code: "UNAUTHORIZED", message: "only the admin or the user \(subscriber) may watch this shard as \(subscriber)")
        }
        let capture = PluginErrorCapture()
        let status = Self.withText(subscriber) { sid, sidLen in
            Self.withBytes(authJSON) { a, aLen in capture.withSink { f(instance, state, sid, sidLen, a, aLen, $0) } }
        }
        return status == PYLON_OK ? nil : capture.failure(status, code: "UNAUTHORIZED", message: "the sim refused this subscriber")
    }

    /// nil: allowed (also without the plugin's slot).
    func authorizeInput(_ state: OpaquePointer, subscriber: String, authJSON: [UInt8], input: [UInt8]) -> PluginError? {
        guard let f = table.pointee.authorize_input else { return nil }
        let capture = PluginErrorCapture()
        let status = Self.withText(subscriber) { sid, sidLen in
            Self.withBytes(authJSON) { a, aLen in
                Self.withBytes(input) { inp, inpLen in capture.withSink { f(instance, state, sid, sidLen, a, aLen, inp, inpLen, $0) } }
            }
        }
        return status == PYLON_OK ? nil : capture.failure(status, code: "INPUT_UNAUTHORIZED", message: "the sim refused this input from this caller")
    }

    private static func withText<R>(_ s: String, _ body: (UnsafePointer<CChar>?, Int) -> R) -> R {
        var s = s
        return s.withUTF8 { u in u.withMemoryRebound(to: CChar.self) { body($0.baseAddress, $0.count) } }
    }

    private static func withBytes<R>(_ b: [UInt8], _ body: (UnsafePointer<CChar>?, Int) -> R) -> R {
        b.withUnsafeBufferPointer { u in u.withMemoryRebound(to: CChar.self) { body($0.baseAddress, $0.count) } }
    }
}

/// A sim's failure as a Swift error (for `Result`): the plugin's code and message.
struct SimError: Error {
    let code: String
    let message: String
    init(_ e: PluginError) {
        code = e.code
        message = e.message
    }
}

extension PluginError {
    /// An error the host finds in a plugin's answer (not one the plugin reported).
    init(code: String, message: String) {
        self.init(PYLON_ERR_GENERIC, nil)
        self.code = code
        self.message = message
    }
}

/// Where `snapshot_for` (and `save`) hand their bytes: copied at once, at most
/// `PYLON_SIM_SNAPSHOT_MAX`, the first call only.
final class SimBytesSink {
    var bytes: [UInt8]?
    var tooLarge = false
}

let simBytesReceived: pylon_sim_bytes_fn = { ctx, bytes, len in
    guard let ctx else { return }
    let sink = Unmanaged<SimBytesSink>.fromOpaque(ctx).takeUnretainedValue()
    guard sink.bytes == nil, !sink.tooLarge else { return }
    guard len <= Int(PYLON_SIM_SNAPSHOT_MAX) else {
        sink.tooLarge = true
        return
    }
    sink.bytes = len == 0 || bytes == nil ? [] : Array(UnsafeBufferPointer(start: bytes, count: len))
}
