@testable import PylonHost

/// libFuzzer target: `RawRequest.parse`, the raw HTTP/1.1 head parser ahead of NIO's codec
/// (Sources/PylonHost/HTTP/RawFront.swift), on arbitrary bytes. Findings: a crash (bounds,
/// overflow), a hang, or a parsed request whose head and body do not lie within the limits
/// the caller relies on when it slices the buffer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHead(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let maxBody = 1 << 20
    let parsed = RawRequest.parse(UnsafeRawBufferPointer(start: data, count: size), maxBody: maxBody)
    if case let .request(_, headLength, bodyLength) = parsed {
        guard headLength >= 4 && headLength <= min(size, RawRequest.maxHead) else { fatalError("head length \(headLength) of \(size) bytes") }
        guard bodyLength >= 0 && bodyLength <= maxBody else { fatalError("body length \(bodyLength)") }
    }
    return 0
}
