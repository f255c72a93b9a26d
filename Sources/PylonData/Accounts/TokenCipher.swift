import Crypto
import Foundation
import PylonCore

/// Encrypts secrets the host keeps at rest (OAuth provider tokens, PKCE verifiers) with
/// AES-256-GCM: "v1." + base64(nonce ‖ ciphertext ‖ tag). A value that was tampered with,
/// or written under another key, does not decrypt (nil).
package struct TokenCipher: Sendable {
    private let key: SymmetricKey

    /// The key from PYLON_AUTH_ENCRYPTION_KEY: 32 bytes as 64 hex digits or as base64.
    package init(configured text: String) throws(HostError) {
        let t = text.trimmingCharacters(in: .whitespaces)
        var bytes: [UInt8]?
        if t.utf8.count == 64, t.utf8.allSatisfy({ $0.isHexDigit }) {
            bytes = stride(from: 0, to: 64, by: 2).map { i in
                let s = t.utf8.index(t.utf8.startIndex, offsetBy: i)
                return UInt8(String(t[s..<t.utf8.index(s, offsetBy: 2)]), radix: 16)!
            }
        } else if let d = Data(base64Encoded: t), d.count == 32 {
            bytes = Array(d)
        }
        guard let bytes else {
            throw HostError(status: 500, code: "CONFIG_INVALID",
                            message: "PYLON_AUTH_ENCRYPTION_KEY must be 32 random bytes as 64 hex digits or base64 (e.g. openssl rand -hex 32)")
        }
        key = SymmetricKey(data: bytes)
    }

    /// A fixed key for --dev without a configured one: what it encrypts is only as safe as
    /// the database file (the startup log says so).
    package static let development = TokenCipher(key: SymmetricKey(data: SHA256.hash(data: Array("pylon-dev-auth-encryption-key".utf8))))

    private init(key: SymmetricKey) { self.key = key }

    package func seal(_ plain: String) -> String {
        // AES-GCM sealing fails only for an invalid key size, which `init` rules out.
        let box = try! AES.GCM.seal(Array(plain.utf8), using: key)
        return "v1." + box.combined!.base64EncodedString()
    }

    package func open(_ sealed: String) -> String? {
        guard sealed.hasPrefix("v1."), let data = Data(base64Encoded: String(sealed.dropFirst(3))),
              let box = try? AES.GCM.SealedBox(combined: data), let plain = try? AES.GCM.open(box, using: key) else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}

private extension UInt8 {
    var isHexDigit: Bool { (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self) }
}
