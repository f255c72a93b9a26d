import Foundation

/// An error the host answered (`{"error":{"code","message"}}`) or the client raised.
/// `status` is the HTTP status, 0 when no answer came (the request may be retried: nothing
/// was decided).
public struct PylonError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host's stable UPPER_SNAKE code, or a client code (NETWORK_ERROR, TIMEOUT…).
    public let code: String
    public let message: String
    public let status: Int
    /// Every other key of the host's error object (e.g. `oldest_seq` of a 410).
    public let details: [String: JSON]

    public init(code: String, message: String, status: Int, details: [String: JSON] = [:]) {
        self.code = code
        self.message = message
        self.status = status
        self.details = details
    }

    public var isNetwork: Bool { status == 0 }
    public var description: String { "\(code) (\(status)): \(message)" }

    /// Reads the host's error body; a body of another shape keeps `fallback` as its code.
    static func fromBody(status: Int, body: JSON?, fallback: String = "HTTP_ERROR") -> PylonError {
        guard case let .object(err)? = body?["error"] else {
            return PylonError(code: fallback, message: "HTTP \(status)", status: status)
        }
        var rest = err
        let code = rest.removeValue(forKey: "code")?.stringValue ?? fallback
        let message = rest.removeValue(forKey: "message")?.stringValue ?? ""
        return PylonError(code: code, message: message, status: status, details: rest)
    }

    static func network(_ cause: Error) -> PylonError {
        PylonError(code: "NETWORK_ERROR", message: "the host could not be reached: \(cause)", status: 0)
    }

    static let resyncCode = "RESYNC_REQUIRED"
    var isResync: Bool { code == Self.resyncCode }
}
