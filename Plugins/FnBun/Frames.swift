import PylonJSON

/// One protocol frame from a Bun worker: an NDJSON line holding one object. Its top-level
/// members are located in one pass and read by comparing key bytes (`JSONMembers`), so no
/// document is built for the lines a busy pool reads by the thousand, and payloads (a
/// function's return value, a `db` op) are forwarded to the host untouched.
typealias Frame = JSONMembers

/// Appends JSON text to an NDJSON frame on one line: in valid JSON a CR or LF can only be
/// whitespace between tokens (inside strings they are escaped), so each becomes a space.
/// The host passes arguments as the client sent them, pretty-printed or not.
func appendOneLine<C: Collection>(_ frame: inout [UInt8], _ json: C) where C.Element == UInt8 {
    let start = frame.count
    frame.append(contentsOf: json)
    for k in start..<frame.count where frame[k] == 0x0A || frame[k] == 0x0D { frame[k] = 0x20 }
}
