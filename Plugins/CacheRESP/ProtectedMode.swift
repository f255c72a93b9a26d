#if canImport(Glibc)
import Glibc
#endif

/// Redis' protected mode for the RESP listener. A cache bound to an address other than
/// loopback with no password would let anyone who can reach the port read and change it;
/// as in Redis, such a listener still serves clients on this machine's loopback but answers
/// every other client with Redis' own `-DENIED …` error and closes the connection at once
/// (before reading anything from it). Setting a password, or turning protected mode off
/// explicitly (`protected_mode: false`, `PYLON_CACHE_PROTECTED_MODE=0`), serves everyone.
struct ProtectedMode {
    /// Whether connections from outside loopback are refused: protected mode on, no
    /// password, and the listener bound to a non-loopback address.
    let refusesRemoteClients: Bool

    init(config: CacheConfig) {
        refusesRemoteClients = config.protectedMode && config.requirepass == nil && !Self.isLoopback(address: config.bind)
    }

    /// Whether a client whose IPv4 address (host byte order) is `peer` is turned away.
    func refuses(peer: UInt32) -> Bool {
        refusesRemoteClients && !Self.isLoopback(peer)
    }

    /// 127.0.0.0/8, host byte order.
    static func isLoopback(_ ipv4: UInt32) -> Bool { ipv4 >> 24 == 127 }

    /// Whether `address` (dotted IPv4) is a loopback address; anything else, `0.0.0.0`
    /// included, can be reached from outside.
    static func isLoopback(address: String) -> Bool {
        var addr = in_addr()
        guard inet_pton(AF_INET, address, &addr) == 1 else { return false }
        return isLoopback(UInt32(bigEndian: addr.s_addr))
    }

    /// What the startup log says about the listener on `endpoint` (`bind:port`), nil when
    /// it is only reachable from this machine or needs a password.
    static func warning(_ config: CacheConfig, endpoint: String) -> String? {
        guard config.requirepass == nil, !isLoopback(address: config.bind) else { return nil }
        if config.protectedMode {
            return "pylon.cache.resp: protected mode: \(endpoint) has no password, so only clients on this machine's loopback are served; "
                + "others get -DENIED and are disconnected. Set a password (PYLON_CACHE_PASSWORD or plugins.cache.requirepass), "
                + "or, on a trusted network only, turn protected mode off (PYLON_CACHE_PROTECTED_MODE=0 or plugins.cache.protected_mode: false)."
        }
        return "pylon.cache.resp: protected mode is off and \(endpoint) has no password: anyone who can reach it can read and change the cache. "
            + "Set a password (PYLON_CACHE_PASSWORD or plugins.cache.requirepass)."
    }

    /// Redis 7.0.15's reply to a refused client, byte for byte (its "Setup a an" included).
    static let deniedReply = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. "
        + "In this mode connections are only accepted from the loopback interface. "
        + "If you want to connect from external computers to Redis you may adopt one of the following solutions: "
        + "1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis "
        + "from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. "
        + "Use CONFIG REWRITE to make this change permanent. "
        + "2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', "
        + "and then restarting the server. "
        + "3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. "
        + "4) Setup a an authentication password for the default user. "
        + "NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n"
}
