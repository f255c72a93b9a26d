import Crypto
import Foundation
import PylonCore

/// Short-lived signed download links (`GET /api/files/:id?exp=&sig=`), so an `<img src>`
/// works without a cookie or a header: `sig` is base64url(HMAC-SHA256(secret,
/// "pylon.files/1\n" + id + "\n" + exp)), `exp` a Unix time in seconds. The link names one
/// file and stops working at `exp`; it carries no identity. Checked before the file is
/// looked up, so a bad link tells nothing about whether the file exists.
package struct FileSignature: Sendable {
    private let key: SymmetricKey

    /// The longest lifetime a link may be given (seconds): a week.
    package static let maxLifetime: Int64 = 7 * 86_400
    /// A link's lifetime when none is asked for (seconds).
    package static let defaultLifetime: Int64 = 3600

    package init(secret: String) { key = SymmetricKey(data: Data(secret.utf8)) }

    package func sign(id: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("pylon.files/1\n\(id)\n\(expires)".utf8), using: key)
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Whether `sig` signs `id` until `exp` (text as given in the query) and `exp` is still
    /// ahead of `now`.
    package func verify(id: String, exp: String, sig: String, now: Int64) -> Bool {
        guard let expires = Int64(exp), String(expires) == exp, expires > now else { return false }
        return ConstantTime.equal(sign(id: id, expires: expires), sig)
    }
}
