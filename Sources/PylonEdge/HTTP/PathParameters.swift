import Hummingbird
import PylonCore

/// Path parameters as every handler reads them: percent-decoded once, here, by
/// `APIMiddleware.handle` after the router matched the raw path. The router splits the raw
/// path, so `%2F` stays inside its one parameter; a handler never decodes again (a literal
/// `%` arrives as `%25`, and a second decode would turn `pct%2541` into `pctA`, not `pct%41`).
/// The `**` capture (static site, studio, port+2) is left raw: those routes read the
/// request path themselves.
enum PathParameters {
    /// The stable code of a parameter whose percent-encoding is broken.
    static let invalidCode = "INVALID_PATH"

    /// `params` with every named value decoded; unchanged (no copy) when none has a `%`.
    static func decoded(_ params: Parameters) throws(HostError) -> Parameters {
        let encoded = params.contains { $0.key != Parameters.recursiveCaptureKey && $0.value.utf8.contains(percent) }
        guard encoded else { return params }
        var out = Parameters()
        for (key, value) in params {
            if key == Parameters.recursiveCaptureKey {
                out.append(key: key, value: value)
            } else {
                out.append(key: key, value: Substring(try decode(value, name: key)))
            }
        }
        return out
    }

    /// `%XX` (two hex digits) becomes its byte; the bytes must then be UTF-8. `+` stays `+`
    /// (form encoding is for query strings, not paths).
    static func decode(_ raw: Substring, name: Substring) throws(HostError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.utf8.count)
        var it = raw.utf8.makeIterator()
        while let c = it.next() {
            guard c == percent else { bytes.append(c); continue }
            guard let hi = it.next().flatMap(hexValue), let lo = it.next().flatMap(hexValue) else { throw invalid(name) }
            bytes.append(hi << 4 | lo)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw invalid(name) }
        return text
    }

    private static let percent = UInt8(ascii: "%")

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func invalid(_ name: Substring) -> HostError {
        HostError.badRequest(invalidCode, "the path part \"\(name)\" is not valid percent-encoding: a % must be followed by two hex digits "
            + "and the decoded bytes must be UTF-8; encode each path part with encodeURIComponent")
    }
}
