import Foundation
import PylonCore
import PylonJSON

extension AuthContext {
    /// The caller as a function sees it (`ctx.auth`), snake_case as in Pylon's frames.
    /// `functionJSON` as text; the anonymous caller's (most calls of a public app) is
    /// encoded once.
    var functionJSONBytes: [UInt8] {
        self == .anonymous ? Self.anonymousFunctionJSON : JSONWriter.encode(functionJSON)
    }

    private static let anonymousFunctionJSON = JSONWriter.encode(AuthContext.anonymous.functionJSON)

    var functionJSON: JSONValue {
        .object([
            ("user_id", userID.map { .string($0) } ?? .null), ("is_admin", .bool(isAdmin)), ("is_guest", .bool(isGuest)),
            ("roles", .array(roles.map { .string($0) })), ("tenant_id", tenantID.map { .string($0) } ?? .null),
        ])
    }
}
