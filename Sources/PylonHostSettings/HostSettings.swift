#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The host's own settings among the process's environment variables: every `PYLON_*`
/// variable (the admin token, JWT secret, API-key pepper, files secret, mail and OAuth
/// secrets, ...) and `DATABASE_URL`. One definition for the two places that must agree on
/// it: FnBun keeps these entries out of its Bun workers' environment (`ctx.env`), and
/// pylon-host hides their values from `/proc/<pid>/environ` at start-up (`hideFromProcfs`),
/// which code in those workers, running as the host's user, could otherwise read. Linked
/// statically into the host and into FnBun, like PylonJSON.
public enum HostSettings {
    /// Whether the environment entry `NAME=value` is one of the host's own settings.
    public static func isHostSetting(_ entry: UnsafePointer<CChar>) -> Bool {
        strncmp(entry, "PYLON_", 6) == 0 || strncmp(entry, "DATABASE_URL=", 13) == 0
    }
}
