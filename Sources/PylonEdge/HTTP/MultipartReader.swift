import NIOCore
import PylonCore

/// A `multipart/form-data` body (RFC 7578) read as it arrives, chunk by chunk, without
/// holding more than one part's header block and a delimiter's length of data: `feed` turns
/// each chunk into events (a part's header fields, pieces of its content, its end), and
/// `finish` checks that the body ended with the closing delimiter. Malformed input is 400
/// INVALID_MULTIPART, never a crash.
struct MultipartReader {
    enum Event {
        /// A part begins; its header fields, names lowercased.
        case part([(name: String, value: String)])
        /// A piece of the current part's content.
        case data(ByteBuffer)
        /// The current part ended.
        case partEnd
    }

    private enum State {
        case preamble
        case headers
        case content
        case afterDelimiter
        case done
    }

    /// "\r\n--" + boundary: what ends a part's content. The body's first delimiter has no
    /// CRLF before it, so the reader starts as if one had been read.
    private let delimiter: [UInt8]
    private var state = State.preamble
    private var pending: [UInt8] = [13, 10]
    /// The longest header block of one part.
    static let maxHeaderBytes = 16 * 1024

    init(boundary: String) { delimiter = Array("\r\n--\(boundary)".utf8) }

    /// The boundary of a `multipart/form-data` Content-Type, or nil when the body is not
    /// multipart; a multipart type without a usable boundary is 400.
    static func boundary(contentType: String?) throws(HostError) -> String? {
        guard let contentType else { return nil }
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = parts.first, first.lowercased() == "multipart/form-data" else { return nil }
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            var b = kv[1].trimmingCharacters(in: .whitespaces)
            if b.count >= 2, b.hasPrefix("\""), b.hasSuffix("\"") { b = String(b.dropFirst().dropLast()) }
            guard (1...70).contains(b.utf8.count), b.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }) else { break }
            return b
        }
        throw invalid("the Content-Type multipart/form-data needs a boundary parameter of 1 to 70 characters")
    }

    static func invalid(_ message: String) -> HostError {
        HostError(status: 400, code: "INVALID_MULTIPART", message: message)
    }

    mutating func feed(_ chunk: ByteBuffer) throws(HostError) -> [Event] {
        if case .done = state { return [] }  // the epilogue is ignored
        pending.append(contentsOf: chunk.readableBytesView)
        var events: [Event] = []
        var start = 0
        loop: while true {
            switch state {
            case .preamble:
                guard let i = find(delimiter, from: start) else {
                    // Keep what could be the start of a delimiter.
                    start = max(start, pending.count - delimiter.count + 1)
                    break loop
                }
                start = i + delimiter.count
                state = .afterDelimiter
            case .afterDelimiter:
                guard pending.count - start >= 2 else { break loop }
                let a = pending[start], b = pending[start + 1]
                start += 2
                if a == 45 && b == 45 {  // "--": the closing delimiter
                    state = .done
                    pending = []
                    return events
                }
                guard a == 13 && b == 10 else { throw Self.invalid("a multipart delimiter must be followed by CRLF or --") }
                state = .headers
            case .headers:
                guard pending.count - start >= 2 else { break loop }
                // A part with no header lines starts with the blank line at once.
                let blankAtOnce = pending[start] == 13 && pending[start + 1] == 10
                guard let end = blankAtOnce ? start - 2 : find([13, 10, 13, 10], from: start) else {
                    if pending.count - start > Self.maxHeaderBytes { throw Self.invalid("a part's header block is longer than \(Self.maxHeaderBytes) bytes") }
                    break loop
                }
                events.append(.part(try Self.fields(pending[start..<max(start, end)])))
                start = end + 4
                state = .content
            case .content:
                if let i = find(delimiter, from: start) {
                    if i > start { events.append(.data(Self.buffer(pending[start..<i]))) }
                    events.append(.partEnd)
                    start = i + delimiter.count
                    state = .afterDelimiter
                } else {
                    let keep = pending.count - delimiter.count + 1
                    if keep > start {
                        events.append(.data(Self.buffer(pending[start..<keep])))
                        start = keep
                    }
                    break loop
                }
            case .done:
                break loop
            }
        }
        pending.removeFirst(min(start, pending.count))
        return events
    }

    /// The body ended: 400 unless the closing delimiter was read.
    func finish() throws(HostError) {
        guard case .done = state else { throw Self.invalid("the multipart body ended before its closing delimiter") }
    }

    private func find(_ needle: [UInt8], from: Int) -> Int? {
        let n = needle.count
        guard pending.count - from >= n else { return nil }
        let first = needle[0]
        var i = from
        while i <= pending.count - n {
            if pending[i] == first {
                var j = 1
                while j < n && pending[i + j] == needle[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }

    private static func buffer(_ bytes: ArraySlice<UInt8>) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return b
    }

    private static func fields(_ block: ArraySlice<UInt8>) throws(HostError) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        for line in String(decoding: block, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else { throw invalid("a part's header line has no colon") }
            out.append((line[..<colon].trimmingCharacters(in: .whitespaces).lowercased(),
                        line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return out
    }

    /// The `filename` parameter of a part's Content-Disposition (`filename*=UTF-8''…`
    /// preferred), or nil when the part is not a file.
    static func filename(_ fields: [(name: String, value: String)]) -> String? {
        guard let cd = fields.first(where: { $0.name == "content-disposition" })?.value else { return nil }
        var plain: String?
        var extended: String?
        for param in parameters(cd) {
            if param.name == "filename*" {
                let v = param.value
                if let r = v.range(of: "''") { extended = String(v[r.upperBound...]).removingPercentEncoding }
            } else if param.name == "filename" {
                plain = param.value
            }
        }
        return extended ?? plain
    }

    /// `; name=value` parameters after the first token, quoted strings unescaped.
    private static func parameters(_ header: String) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        var chars = Substring(header)
        guard let semi = chars.firstIndex(of: ";") else { return [] }
        chars = chars[chars.index(after: semi)...]
        while !chars.isEmpty {
            chars = chars.drop(while: { $0 == " " || $0 == "\t" || $0 == ";" })
            guard let eq = chars.firstIndex(of: "=") else { break }
            let name = chars[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            chars = chars[chars.index(after: eq)...].drop(while: { $0 == " " })
            var value = ""
            if chars.first == "\"" {
                chars = chars.dropFirst()
                var escaped = false
                while let c = chars.first {
                    chars = chars.dropFirst()
                    if escaped { value.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { break } else { value.append(c) }
                }
                chars = chars.drop(while: { $0 != ";" })
            } else {
                let end = chars.firstIndex(of: ";") ?? chars.endIndex
                value = chars[..<end].trimmingCharacters(in: .whitespaces)
                chars = chars[end...]
            }
            out.append((name, value))
        }
        return out
    }
}
