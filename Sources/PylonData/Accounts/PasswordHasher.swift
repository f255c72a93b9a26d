import CArgon2
import Foundation
import PylonCore

/// Argon2id password hashes as PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), the
/// format Pylon stores, so a hash made by either verifies in the other: the parameters
/// travel inside the string. New hashes use OWASP's and Pylon's defaults (19 MiB, two
/// passes, one lane). Slow on purpose (tens of milliseconds): callers run it on
/// `PasswordWorkers`, never on an event loop.
package enum PasswordHasher {
    static let timeCost: UInt32 = 2
    static let memoryKiB: UInt32 = 19_456
    static let lanes: UInt32 = 1
    static let saltBytes = 16
    static let hashBytes = 32
    /// A password longer than this is refused before hashing: the work grows with the input.
    package static let maxPasswordBytes = 1024
    /// Pylon's minimum.
    package static let minPasswordCharacters = 10

    /// The PHC string of `password` with a fresh random salt.
    package static func hash(_ password: String) throws(HostError) -> String {
        var salt = [UInt8](repeating: 0, count: saltBytes)
        var rng = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = UInt8.random(in: 0...255, using: &rng) }
        let length = argon2_encodedlen(timeCost, memoryKiB, lanes, UInt32(saltBytes), UInt32(hashBytes), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length)
        let pwd = Array(password.utf8)
        let rc = pwd.withUnsafeBytes { p in
            argon2id_hash_encoded(timeCost, memoryKiB, lanes, p.baseAddress, p.count, salt, salt.count, hashBytes, &encoded, length)
        }
        guard rc == ARGON2_OK.rawValue else {
            throw HostError(status: 500, code: "PASSWORD_HASH_FAILED",
                            message: "could not hash the password (\(String(cString: argon2_error_message(rc)))); try again")
        }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `password` matches `phc`. False for a malformed string, another algorithm, or
    /// parameters beyond what the host would ever make (a planted hash must not make one
    /// check cost seconds or gigabytes).
    package static func verify(_ password: String, phc: String) -> Bool {
        guard phc.hasPrefix("$argon2id$"), withinLimits(phc) else { return false }
        let pwd = Array(password.utf8)
        let rc = phc.withCString { encoded in
            pwd.withUnsafeBytes { p in argon2id_verify(encoded, p.baseAddress, p.count) }
        }
        return rc == ARGON2_OK.rawValue
    }

    /// The `m`, `t` and `p` of a PHC string are at most 256 MiB, 16 passes and 16 lanes.
    static func withinLimits(_ phc: String) -> Bool {
        let fields = phc.split(separator: "$")
        guard fields.count == 5 else { return false }
        var m = 0, t = 0, p = 0
        for pair in fields[2].split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let n = Int(kv[1]) else { return false }
            switch kv[0] {
            case "m": m = n
            case "t": t = n
            case "p": p = n
            default: return false
            }
        }
        return (8...262_144).contains(m) && (1...16).contains(t) && (1...16).contains(p)
    }

    /// A hash of a password nobody knows, checked when the email is unknown so that a
    /// failed login takes as long either way (no account enumeration by timing).
    package static let decoy: String = (try? hash(UUID().uuidString + UUID().uuidString)) ?? ""
}
