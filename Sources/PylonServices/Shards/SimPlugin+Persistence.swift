import Foundation
import PylonPluginABI
import PylonCore

/// The optional `save` and `restore` slots of `pylon.shard.sim/1` (`SimPlugin.persists`):
/// what `ShardPersistence` keeps of a shard, and how a restarted host gets it back.
extension SimPlugin {
    /// The whole state as bytes (copied; at most PYLON_SIM_SNAPSHOT_MAX). Inside a turn only.
    func save(_ state: OpaquePointer) -> Result<[UInt8], SimError> {
        guard let save = table.pointee.save else {
            return .failure(SimError(PluginError(code: "SIM_CANNOT_PERSIST", message: "the sim \(name) has no save slot")))
        }
        let capture = PluginErrorCapture()
        let sink = SimBytesSink()
        let status = capture.withSink { err in
            withExtendedLifetime(sink) { save(instance, state, simBytesReceived, Unmanaged.passUnretained(sink).toOpaque(), err) }
        }
        guard status == PYLON_OK else {
            return .failure(SimError(capture.failure(status, code: "SIM_SAVE_FAILED", message: "save returned status \(status)")))
        }
        if sink.tooLarge {
            return .failure(SimError(PluginError(code: "SIM_SAVE_TOO_LARGE", message: "save returned more than \(PYLON_SIM_SNAPSHOT_MAX) bytes")))
        }
        guard let bytes = sink.bytes else {
            return .failure(SimError(PluginError(code: "SIM_SAVE_MISSING", message: "save returned PYLON_OK without handing back the state")))
        }
        return .success(bytes)
    }

    /// A state from bytes `save` made, or the plugin's error.
    func restore(_ saved: [UInt8]) -> Result<OpaquePointer, SimError> {
        guard let restore = table.pointee.restore else {
            return .failure(SimError(PluginError(code: "SIM_CANNOT_PERSIST", message: "the sim \(name) has no restore slot")))
        }
        let capture = PluginErrorCapture()
        var out: OpaquePointer?
        let status = saved.withUnsafeBufferPointer { b in capture.withSink { restore(instance, b.baseAddress, b.count, &out, $0) } }
        guard status == PYLON_OK, let out else {
            if let out { destroy(out) }
            return .failure(SimError(capture.failure(status == PYLON_OK ? PYLON_ERR_GENERIC : status, code: "SIM_RESTORE_FAILED",
                                                     message: "the sim \(name) could not restore that state")))
        }
        return .success(out)
    }
}
