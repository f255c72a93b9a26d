import Dispatch
import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonJSON

/// The reply to one `db_call`: calls the plugin's `done` exactly once.
final class DBReplyBox: @unchecked Sendable {
    let done: pylon_fn_db_done_fn
    let ctx: UnsafeMutableRawPointer?
    /// Set for `ctx.db` operations: traces the operation when it is answered.
    var timer: FnOpTimer?

    init(done: pylon_fn_db_done_fn, ctx: UnsafeMutableRawPointer?) {
        self.done = done
        self.ctx = ctx
    }

    func succeed(_ value: JSONValue) {
        timer?.finish(value)
        succeed(raw: JSONWriter.encode(value))
    }

    func succeed(raw bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { done(ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
    }

    func fail(_ e: HostError) {
        timer?.finish(nil)
        let status: pylon_status = e.status == 404 ? PYLON_ERR_NOT_FOUND : e.status == 409 ? PYLON_ERR_CONSTRAINT : PYLON_ERR_GENERIC
        e.withPluginError(status) { done(ctx, status, nil, 0, $0) }
    }
}
