import CCurl
import Crypto
import Foundation
import Logging
import PylonCore
import PylonCurl

/// Refuses new passwords that appear in known breaches, through a k-anonymity range API
/// (Have I Been Pwned's, or a compatible one): only the first 5 hex digits of the password's
/// SHA-1 leave the host, and the answer lists every known suffix with that prefix
/// (`SUFFIX:COUNT` lines; padding lines count 0). Off unless configured
/// (`PYLON_PASSWORD_BREACH_CHECK`). When the service cannot be reached the password is
/// accepted and a warning logged: the check is a second line of defence, and sign-up must
/// not fail because another site is down.
package struct BreachedPasswords: Sendable {
    let rangeURL: String
    let logger: Logger
    let http = CurlHTTP(timeoutMs: 3000, maxResponseBytes: 4 << 20)

    package init(rangeURL: String, logger: Logger) {
        _ = pylon_curl_global_once()
        self.rangeURL = rangeURL
        self.logger = logger
    }

    /// 400 `PASSWORD_BREACHED` when the service knows the password.
    package func check(_ password: String) async throws(HostError) {
        let digest = Insecure.SHA1.hash(data: Array(password.utf8)).map { String(format: "%02X", $0) }.joined()
        let (prefix, suffix) = (digest.prefix(5), digest.dropFirst(5))
        let reply: CurlHTTP.Reply
        do throws(CurlHTTP.Failure) {
            reply = try await http.send(rangeURL + prefix, headers: ["Add-Padding: true", "User-Agent: pylon-swift"])
        } catch {
            logger.warning("breached-password check skipped: \(error.message)")
            return
        }
        guard reply.status == 200 else {
            logger.warning("breached-password check skipped: \(CurlHTTP.origin(rangeURL)) answered HTTP \(reply.status)")
            return
        }
        for line in String(decoding: reply.body, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].uppercased() == suffix,
                  let count = Int(parts[1].trimmingCharacters(in: .whitespaces)), count > 0 else { continue }
            throw HostError.badRequest("PASSWORD_BREACHED", "this password appears in known data breaches (\(count) times); choose another")
        }
    }
}
