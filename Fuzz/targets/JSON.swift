import PylonJSON

/// libFuzzer target: `JSONParser.parse` and `JSONParser.validate`
/// (Sources/PylonJSON/JSONParser.swift) on arbitrary bytes. Besides crashes and hangs,
/// a finding is any disagreement: `validate` must accept exactly what `parse` accepts and
/// fail with the same error, and what `parse` builds must come back unchanged through
/// `JSONWriter` and `parse` again; and on every object `parse` accepts, `JSONParser.members`
/// (FnBun's frames) must find the same members, each raw value parsing to the same value.
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
        if case let .object(pairs) = value {
            guard let members = try? JSONMembers(bytes) else { fatalError("members refuses an object parse accepts") }
            let found = members.members.map { m in
                (bytes.withUnsafeBufferPointer { try? JSONParser.string($0, at: (m.key.lowerBound - 1)..<(m.key.upperBound + 1)) },
                 try? JSONParser.parse(Array(bytes[m.value])))
            }
            for (key, v) in pairs {
                guard let last = found.last(where: { $0.0.map { JSONValue.sameKey($0, key) } ?? false }), last.1 == v else {
                    fatalError("members reads \(key) differently from parse")
                }
            }
        }
    case let (.failure(a), .failure(b)):
        guard a.message == b.message && a.offset == b.offset else { fatalError("parse says \(a), validate says \(b)") }
    case let (.success, .failure(error)):
        fatalError("parse accepts what validate refuses (\(error))")
    case let (.failure(error), .success):
        fatalError("validate accepts what parse refuses (\(error))")
    }
    return 0
}
