import NIOCore
import Testing
import PylonCore
@testable import PylonEdge

/// The pure parts of the file routes: the streaming multipart reader (split anywhere, the
/// same file comes out; malformed bodies are 400, never a crash), `Range` parsing, and the
/// names and types kept.
@Suite("File parsing: multipart reader, Range header, names and types")
struct FileParsingTests {
    static let boundary = "XyZ-boundary"

    /// A body whose file part holds bytes that look like delimiters but are not.
    static let content: [UInt8] = Array("line one\r\n--XyZ-boundar\r\n--XyZ\r\n".utf8) + [0, 13, 10, 45, 45, 255] + Array("\r\n-".utf8)
    static let body: [UInt8] = Array("preamble to ignore\r\n--XyZ-boundary\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ-boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".bin\"\r\nContent-Type: application/x-test\r\n\r\n".utf8)
        + content + Array("\r\n--XyZ-boundary\r\n\r\nno headers at all\r\n--XyZ-boundary--\r\nepilogue".utf8)

    struct Parsed: Equatable {
        var parts: [[String]] = []
        var contents: [[UInt8]] = []
    }

    static func parse(_ chunks: [ArraySlice<UInt8>]) throws -> Parsed {
        var reader = MultipartReader(boundary: boundary)
        var out = Parsed()
        for c in chunks {
            var b = ByteBufferAllocator().buffer(capacity: c.count)
            b.writeBytes(c)
            for e in try reader.feed(b) {
                switch e {
                case let .part(fields):
                    out.parts.append(fields.map { "\($0.name)=\($0.value)" })
                    out.contents.append([])
                case let .data(d): out.contents[out.contents.count - 1] += Array(d.readableBytesView)
                case .partEnd: break
                }
            }
        }
        try reader.finish()
        return out
    }

    @Test("Split at every byte, or fed one byte at a time, a body gives the same parts and contents")
    func splitAnywhere() throws {
        let whole = try Self.parse([Self.body[...]])
        #expect(whole.parts.count == 3)
        #expect(whole.contents[0] == Array("hello".utf8))
        #expect(whole.contents[1] == Self.content)
        #expect(whole.contents[2] == Array("no headers at all".utf8) && whole.parts[2].isEmpty)
        #expect(whole.parts[1].contains("content-type=application/x-test"))
        let fields = whole.parts[1].map { p -> (name: String, value: String) in
            let kv = p.split(separator: "=", maxSplits: 1)
            return (String(kv[0]), String(kv[1]))
        }
        #expect(MultipartReader.filename(fields) == "a \"b\".bin")
        for i in 0...Self.body.count {
            #expect(try Self.parse([Self.body[..<i], Self.body[i...]]) == whole, "split at \(i)")
        }
        #expect(try Self.parse(Self.body.indices.map { Self.body[$0...$0] }) == whole)
    }

    @Test("Random content round-trips in random chunks; random bodies built from delimiter pieces end in parts or a 400, never a crash or a hang")
    func randomBodies() throws {
        var g = SystemRandomNumberGenerator()
        func chunks(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
            var out: [ArraySlice<UInt8>] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...max(1, min(bytes.count - i, 97)), using: &g)
                out.append(bytes[i..<(i + n)])
                i += n
            }
            return out
        }
        for _ in 0..<300 {
            let content = (0..<Int.random(in: 0...3000, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let body = Array("--\(Self.boundary)\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n".utf8)
                + content + Array("\r\n--\(Self.boundary)--\r\n".utf8)
            #expect(try Self.parse(chunks(body)).contents == [content])
        }
        let pieces: [[UInt8]] = ["\r\n", "--", Self.boundary, "--\(Self.boundary)", "\r\n\r\n", "a: b", ":", "x", "\u{0}", "\r"].map { Array($0.utf8) }
        for _ in 0..<2000 {
            let body = (0..<Int.random(in: 0...40, using: &g)).flatMap { _ in pieces.randomElement(using: &g)! }
            do {
                _ = try Self.parse(chunks(body))
            } catch let e as HostError {
                #expect(e.status == 400 && e.code == "INVALID_MULTIPART")
            }
        }
    }

    @Test("Malformed bodies and Content-Types are 400 INVALID_MULTIPART")
    func malformed() throws {
        func code(_ body: String) -> String? {
            do {
                _ = try Self.parse([Array(body.utf8)[...]])
                return nil
            } catch let e as HostError {
                return e.status == 400 ? e.code : "status \(e.status)"
            } catch {
                return "\(error)"
            }
        }
        #expect(code("--XyZ-boundary\r\nContent-Disposition: form-data\r\n\r\nno end") == "INVALID_MULTIPART")
        #expect(code("--XyZ-boundary\r\nno colon here\r\n\r\nx\r\n--XyZ-boundary--") == "INVALID_MULTIPART")
        #expect(code("--XyZ-boundaryXX") == "INVALID_MULTIPART")
        #expect(code("") == "INVALID_MULTIPART")
        #expect(code("--XyZ-boundary\r\n" + String(repeating: "a", count: MultipartReader.maxHeaderBytes + 10)) == "INVALID_MULTIPART")
        #expect(throws: HostError.self) { try MultipartReader.boundary(contentType: "multipart/form-data") }
        #expect(throws: HostError.self) { try MultipartReader.boundary(contentType: "multipart/form-data; boundary=" + String(repeating: "b", count: 71)) }
        #expect(try MultipartReader.boundary(contentType: "multipart/form-data; boundary=\"q r\"") == "q r")
        #expect(try MultipartReader.boundary(contentType: "Multipart/Form-Data; charset=utf-8; BOUNDARY=abc") == "abc")
        #expect(try MultipartReader.boundary(contentType: "application/octet-stream") == nil)
        #expect(try MultipartReader.boundary(contentType: nil) == nil)
    }

    @Test("filename* (RFC 5987) wins over filename; a part without one is not a file")
    func filenames() {
        #expect(MultipartReader.filename([("content-disposition", "form-data; name=\"f\"; filename=\"plain.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt")]) == "été.txt")
        #expect(MultipartReader.filename([("content-disposition", "form-data; name=\"f\"")]) == nil)
        #expect(MultipartReader.filename([("content-type", "text/plain")]) == nil)
        #expect(MultipartReader.filename([("content-disposition", "form-data; filename=bare.bin")]) == "bare.bin")
    }

    @Test("Range: one range in bytes, suffixes, clamping; unsatisfiable however large the numbers; a malformed one (a sign, not digits) ignored")
    func ranges() {
        let table: [(String, Int64, ByteRange)] = [
            ("bytes=0-9", 100, .satisfiable(0...9)),
            ("bytes=90-", 100, .satisfiable(90...99)),
            ("bytes=-10", 100, .satisfiable(90...99)),
            ("bytes=-1000", 100, .satisfiable(0...99)),
            ("bytes=50-5000", 100, .satisfiable(50...99)),
            (" bytes=1-1 ", 100, .satisfiable(1...1)),
            ("bytes = 1-1", 100, .ignore),
            ("bytes=100-", 100, .unsatisfiable),
            ("bytes=-0", 100, .unsatisfiable),
            ("bytes=0-", 0, .unsatisfiable),
            ("bytes=9-2", 100, .ignore),
            ("bytes=0-1,4-5", 100, .ignore),
            ("bytes=a-b", 100, .ignore),
            ("bytes=-", 100, .ignore),
            // Valid but past any file: unsatisfiable, however large (RFC 9110 §14.1.1).
            ("bytes=99999999999999999999-", 100, .unsatisfiable),
            ("bytes=9223372036854775807-", 100, .unsatisfiable),
            ("bytes=9223372036854775808-", 100, .unsatisfiable),
            ("bytes=0-99999999999999999999", 100, .satisfiable(0...99)),
            ("bytes=-99999999999999999999", 100, .satisfiable(0...99)),
            // Not digits: invalid, so ignored (the whole file), never 416.
            ("bytes=--1", 100, .ignore),
            ("bytes=-+5", 100, .ignore),
            ("bytes=+1-2", 100, .ignore),
            ("bytes=1--2", 100, .ignore),
            ("bytes=0x1-2", 100, .ignore),
            ("bytes=１-2", 100, .ignore),
            ("items=0-1", 100, .ignore),
            ("", 100, .ignore),
        ]
        for (header, size, expected) in table {
            #expect(ByteRange.parse(header, size: size) == expected, "\(header) of \(size)")
        }
    }

    @Test("Names keep their last path component, without control characters; a type must be exactly one RFC 9110 media type")
    func namesAndTypes() throws {
        #expect(FileNames.clean("../../etc/passwd") == "passwd")
        #expect(FileNames.clean("..\\..\\boot.ini") == "boot.ini")
        #expect(FileNames.clean("a\u{0}b\u{7f}c\nd.txt") == "abcd.txt")
        #expect(FileNames.clean("..") == "upload" && FileNames.clean("") == "upload" && FileNames.clean("dir/") == "dir")
        #expect(FileNames.clean(String(repeating: "é", count: 300)).utf8.count <= 255)
        #expect(try FileNames.mediaType("image/png") == "image/png")
        #expect(try FileNames.mediaType(" text/plain; charset=utf-8\t") == "text/plain; charset=utf-8")
        #expect(StrictMediaType.parse("Text/Plain;;q=\"a\\\"b,c\"; x=y") == StrictMediaType(essence: "text/plain"))
        for bad in ["", "png", "image/", "/png", "image/png/x", "ima ge/png", "image/p\u{1}ng", String(repeating: "a", count: 300) + "/b",
                    "text/plain, text/html", "text/plain;,text/html", "text/plain; charset=utf-8, text/html", "text/plain; a=\"x",
                    "text/plain; a=\"x\\\"", "text/plain; a =b", "text/plain; a=b c", "text/plain; a=\"é\"", "tëxt/plain"] {
            #expect(StrictMediaType.parse(bad) == nil, "\(bad)")
            #expect(throws: HostError.self, "\(bad)") { try FileNames.mediaType(bad) }
        }
        #expect(FileNames.servedType("text/plain;,text/html") == "application/octet-stream")
        #expect(FileNames.disposition("x.txt", type: "text/plain;,text/html").hasPrefix("attachment"))
        #expect(FileNames.disposition("x.xml", type: "image/x-foo+xml").hasPrefix("attachment"))
        #expect(FileNames.disposition("a b.png", type: "image/png") == "inline; filename*=UTF-8''a%20b.png")
        #expect(FileNames.disposition("x.svg", type: "image/svg+xml").hasPrefix("attachment"))
        #expect(FileNames.disposition("x.html", type: "text/html").hasPrefix("attachment"))
    }
}
