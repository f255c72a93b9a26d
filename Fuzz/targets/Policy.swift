@testable import PylonCore
import PylonJSON

/// libFuzzer target: the policy expression parser (Sources/PylonCore/Policy/PolicyExpression.swift)
/// on arbitrary text. What parses is evaluated against a few callers and rows: evaluation
/// must be total (no crash), and where `rowIndependentResult` claims the answer does not
/// depend on the row, `evaluate` must give that answer for every row (the host skips the
/// row filter on that claim).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let expression: PolicyExpression
    do {
        expression = try PolicyExpression(text)
    } catch {
        _ = error.annotated(text)
        return 0
    }
    _ = expression.readsRow
    for caller in PolicyFuzzInputs.callers {
        let email = caller.userID.map { $0 + "@example.com" }
        for action in PolicyFuzzInputs.actionInputs {
            let claim = expression.rowIndependentResult(PolicyInput(auth: caller, authEmail: email, input: action))
            for (n, row) in PolicyFuzzInputs.rows.enumerated() {
                let existing = PolicyFuzzInputs.rows[(n + 1) % PolicyFuzzInputs.rows.count]
                let result = expression.evaluate(PolicyInput(auth: caller, authEmail: email, data: row, existing: existing, input: action))
                if let claim { guard result == claim else { fatalError("rowIndependentResult says \(claim), evaluate says \(result) for \(text)") } }
            }
        }
    }
    return 0
}

enum PolicyFuzzInputs {
    static let callers: [AuthContext] = [
        .anonymous, .admin,
        AuthContext(userID: "u1", isAdmin: false, isGuest: false, roles: ["editor"], tenantID: "t1"),
        AuthContext(userID: "g1", isAdmin: false, isGuest: true, roles: [], tenantID: nil),
    ]
    /// An action's input: none, and one object.
    static let actionInputs: [JSONValue?] = [nil, ["a": 1, "ownerId": "u1", "list": [1, "x"]]]
    static let rows: [JSONValue?] = [
        nil,
        ["id": "r1", "ownerId": "u1", "n": 5, "tags": ["a", "editor"], "tenantId": "t1"],
        ["id": "r2", "ownerId": "u2", "n": 5.5, "nested": ["x": ["y": .null]], "public": true],
        ["id": "r3", "ownerId": .null, "n": -9_223_372_036_854_775_808, "public": false, "data": "data"],
    ]
}
