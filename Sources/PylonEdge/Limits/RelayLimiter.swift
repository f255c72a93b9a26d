import Foundation
import PylonCore
import PylonJSON

/// A token bucket per WebSocket connection for the messages its client sends (topic and
/// presence frames, which the host relays to every WebSocket client: without a limit one
/// guest could flood them all). `rate` messages per second refill it, up to `burst`.
/// A message over the limit is dropped and answered with an error frame
/// (`RELAY_RATE_LIMITED`); a client that goes on sending, `burst` messages dropped in a row
/// with none accepted, is closed (1008). Every message counts, relayed or not: each costs
/// the host a parse.
struct RelayLimiter {
    enum Verdict { case accept, drop, close }

    let rate: Double
    let burst: Double
    private var tokens: Double
    private var refilled: UInt64
    private var droppedInARow = 0

    init(rate: Int, burst: Int) {
        self.rate = Double(max(1, rate))
        self.burst = Double(max(1, burst))
        tokens = self.burst
        refilled = DispatchTime.now().uptimeNanoseconds
    }

    mutating func admit(now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Verdict {
        if now > refilled {
            tokens = min(burst, tokens + Double(now - refilled) / 1e9 * rate)
            refilled = now
        }
        if tokens >= 1 {
            tokens -= 1
            droppedInARow = 0
            return .accept
        }
        droppedInARow += 1
        return Double(droppedInARow) >= burst ? .close : .drop
    }

    /// The error frame a dropped message is answered with.
    var errorFrame: String {
        let e = HostError(status: 429, code: "RELAY_RATE_LIMITED",
                          message: "more than \(Int(rate)) messages per second (burst \(Int(burst))) on this WebSocket; this one was dropped. Send less often; a client that keeps sending over the limit is closed")
        return JSONWriter.string(e.body.setting("type", "error"))
    }
}

extension RelayLimiter {
    /// The error frame a client message over `PYLON_WS_MAX_RELAY_BYTES` is answered with
    /// (it is neither parsed nor relayed; the connection stays open).
    static func tooLargeFrame(bytes: Int, limit: Int) -> String {
        let e = HostError(status: 413, code: "RELAY_TOO_LARGE",
                          message: "this message is \(bytes) bytes; a topic or presence message may be at most \(limit) (PYLON_WS_MAX_RELAY_BYTES), so it was not relayed. Send small JSON; share large data through the API")
        return JSONWriter.string(e.body.setting("type", "error"))
    }
}
