import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// What the pool knows about one function, from the workers' `ready` frames.
struct FnMeta {
    var kind: Int32
    /// `pylon_fn_info.flags`: PYLON_FN_FLAG_PRIVILEGED, PYLON_FN_FLAG_ENFORCE_POLICIES.
    var flags: UInt32
}

/// One call between `start_call` and `complete`.
final class Call: @unchecked Sendable {
    let key: String
    let ctx: UnsafeMutableRawPointer?
    let frame: [UInt8]
    let deadline: Double
    var worker: Worker?
    /// Serializes this call's host callbacks: no `db_call`/`stream` overlaps or follows
    /// `complete` (the ABI's promise to the host).
    let lock = NSLock()
    var finished = false

    init(key: String, ctx: UnsafeMutableRawPointer?, frame: [UInt8], deadline: Double) {
        self.key = key
        self.ctx = ctx
        self.frame = frame
        self.deadline = deadline
    }
}
