import Foundation

/// Ids the client makes: random base-36 characters from the system's CSPRNG.
enum Ids {
    private static func random(_ n: Int) -> String {
        var g = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<n).map { _ in digits[Int(g.next() % 36)] })
    }

    private static var millis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// An optimistic row id the host maps to its own (`id_map`).
    static func pending() -> String { "_pending_\(millis)_\(random(10))" }
    /// An exactly-once operation id.
    static func op() -> String { "mut_\(millis)_\(random(12))" }
    /// This client instance's id, sent with pushes.
    static func client() -> String { "cl_\(random(16))" }
}
