@testable import PylonHost

/// libFuzzer target: `JSONParser.parse` and `JSONParser.validate`
/// (Sources/PylonJSON/JSONParser.swift) on arbitrary bytes. Besides crashes and hangs,
/// a finding is any disagreement: `validate` must accept exactly what `parse` accepts and
/// fail with the same error, and what `parse` builds must come back unchanged through
/// `JSONWriter` and `parse` again.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parsed = Result { () throws(JSONParseError) in try JSONParser.parse(bytes) }
    let validated = Result { () throws(JSONParseError) in try JSONParser.validate(bytes) }
    switch (parsed, validated) {
    case let (.success(value), .success):
        let written = JSONWriter.encode(value)
        guard let again = try? JSONParser.parse(written) else {
            fatalError("JSONWriter's output does not parse: \(String(decoding: written, as: UTF8.self))")
        }
        guard again == value else { fatalError("the value changed through JSONWriter: \(String(decoding: written, as: UTF8.self))") }
        guard JSONWriter.encode(again) == written else { fatalError("JSONWriter is not stable: \(String(decoding: written, as: UTF8.self))") }
    case let (.failure(a), .failure(b)):
        guard a.message == b.message && a.offset == b.offset else { fatalError("parse says \(a), validate says \(b)") }
    case let (.success, .failure(error)):
        fatalError("parse accepts what validate refuses (\(error))")
    case let (.failure(error), .success):
        fatalError("validate accepts what parse refuses (\(error))")
    }
    return 0
}
