import PylonJSON
import PylonPluginKit

/// Settings of the shard WebSocket, from the object the host passes to `start` (the
/// manifest's `plugins."shard.transport"` with the host's settings over it).
struct WSConfig: Sendable {
    /// What is wrong with a config, said for the operator.
    struct Problem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// 0: no listener.
    var port = 0
    var bind = "127.0.0.1"
    /// Fail `start` when the port cannot be bound (a port that was asked for); otherwise
    /// run without a listener and log why.
    var portRequired = false
    /// Open connections from one client address (Pylon's 64), and in all.
    var maxConnectionsPerIP = 64
    var maxConnections = 10_000
    /// The largest message a client may send (after fragments are joined): an input is at
    /// most 64 KiB of JSON, so more than that is never useful.
    var maxFrameBytes = 128 * 1024
    /// The HTTP upgrade must be complete this long after the TCP connect.
    var handshakeTimeoutMs = 10_000
    /// A connection that sends nothing (not even a pong) for this long is closed (0: never).
    var idleTimeoutMs = 90_000
    /// How often the server pings (0: never); a live client's pong keeps it from idling out.
    var pingIntervalMs = 30_000
    /// Consecutive malformed input messages after which the connection is closed.
    var maxMalformedInARow = 16
    /// Event-loop threads of the listener.
    var threads = 1

    static func parse(_ bytes: [UInt8]) -> Result<WSConfig, Problem> {
        guard let obj = configObject(bytes) else { return .failure(Problem("the shard.transport config is not a JSON object")) }
        var c = WSConfig()
        func int(_ key: String, _ range: ClosedRange<Int>) -> Result<Int?, Problem> {
            guard let v = obj[key], v != .null else { return .success(nil) }
            guard let n = v.intValue.map(Int.init) ?? v.stringValue.flatMap({ Int($0) }), range.contains(n) else {
                return .failure(Problem("\"\(key)\" must be an integer in \(range.lowerBound)...\(range.upperBound)"))
            }
            return .success(n)
        }
        let ints: [(String, ClosedRange<Int>, WritableKeyPath<WSConfig, Int>)] = [
            ("port", 0...65535, \.port), ("max_connections_per_ip", 1...1_000_000, \.maxConnectionsPerIP),
            ("max_connections", 1...1_000_000, \.maxConnections), ("max_frame_bytes", 1024...(16 << 20), \.maxFrameBytes),
            ("handshake_timeout_ms", 100...600_000, \.handshakeTimeoutMs), ("idle_timeout_ms", 0...86_400_000, \.idleTimeoutMs),
            ("ping_interval_ms", 0...86_400_000, \.pingIntervalMs), ("max_malformed_in_a_row", 1...1_000_000, \.maxMalformedInARow),
            ("threads", 1...64, \.threads),
        ]
        for (key, range, path) in ints {
            switch int(key, range) {
            case let .failure(m): return .failure(m)
            case let .success(n): if let n { c[keyPath: path] = n }
            }
        }
        if let b = obj["bind"], b != .null {
            guard let s = b.stringValue, !s.isEmpty else { return .failure(Problem("\"bind\" must be an IP address")) }
            c.bind = s
        }
        if let r = obj["port_required"], r != .null {
            guard let on = r.boolValue else { return .failure(Problem("\"port_required\" must be true or false")) }
            c.portRequired = on
        }
        return .success(c)
    }
}
