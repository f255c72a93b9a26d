import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// What the file routes need when a plugin serves `pylon.files/1`.
package struct FileRoutesConfig: Sendable {
    let service: FilesService
    let records: FileRecords
    /// Signs download links; nil when no secret is set (outside --dev without PYLON_FILES_SECRET).
    let signer: FileSignature?
    /// The largest upload body, in bytes (413 past it).
    let maxBytes: Int
    /// Who may read a file besides its owner's default (`plugins.files.allowRead`, a policy
    /// expression over `auth.*` and the file row as `data.*`); nil: owner-only.
    let readRule: PolicyExpression?
    /// Per-user limits (`FileQuota`; unlimited by default).
    let quota: FileQuota
    /// Deletes bytes no row names (nil: the plugin cannot list its keys).
    package let sweeper: FileSweeper?
    let logger: Logger

    package init(service: FilesService, records: FileRecords, signer: FileSignature?, maxBytes: Int,
                 readRule: PolicyExpression? = nil, quota: FileQuota = FileQuota(maxBytes: 0, maxFiles: 0),
                 sweeper: FileSweeper? = nil, logger: Logger) {
        self.readRule = readRule
        self.quota = quota
        self.sweeper = sweeper
        self.logger = logger
        self.service = service
        self.records = records
        self.signer = signer
        self.maxBytes = maxBytes
    }
}

/// File uploads and downloads (pylon-aux.md §6.1, with Pylon's bugs fixed: the exact bytes
/// and the stored content type come back, ids cannot be guessed, the upload is streamed):
///
/// - `POST /api/files/upload`: the raw body (name in `X-Filename`, type in `Content-Type`)
///   or `multipart/form-data` (the first part with a filename), read as it arrives and
///   written through the plugin in chunks, never held whole; 201 with the file's row
///   (`id`, `url`, `size`, `name`, `type`, `sha256`, `owner`, `created_at`). Past the limit:
///   413 and nothing kept. A signed-in user (or the admin token) is required.
/// - `GET` / `HEAD /api/files/:id`: the bytes, streamed from the plugin by range, with
///   the stored type, Content-Length, a strong ETag (the SHA-256), single `Range` requests
///   (206; 416 when unsatisfiable), `If-None-Match` (304). Readable by its owner and admins
///   (or whom the manifest's `plugins.files.allowRead` rule admits), or by anyone holding a
///   signed link (`?exp=&sig=`; a bad or expired link is 403 whether or not the file
///   exists). A file the caller may not read is 404, as a missing one (401 without
///   credentials).
/// - `POST /api/files/:id/sign` `{"expires_in"?: seconds}`: a signed link for the owner.
/// - `DELETE /api/files/:id`: the row (with its change-log entry), then the bytes.
///
/// A file's Content-Type must be exactly one media type (`StrictMediaType`; else 400
/// INVALID_CONTENT_TYPE). Downloads are sent with `Content-Security-Policy: sandbox`,
/// `nosniff` and `Cross-Origin-Resource-Policy: same-site`, and as attachments unless the
/// type is safe to show inline, so an uploaded page cannot run script on the API's origin;
/// a browser load as a script, worker or stylesheet (`Sec-Fetch-Dest`) is refused (403
/// FILE_DESTINATION_REFUSED). Every spelling of the upload path the router accepts
/// (`/api/files/upload/`, `//api/files/upload`) is streamed under the files limit.
extension RouteContext {
    static let uploadPath: StaticString = "/api/files/upload"

    /// The body limit of a request whose body the upload route reads as it arrives: every
    /// spelling the router sends to the upload handler (`RoutePath`), so none is collected
    /// whole under PYLON_MAX_BODY_BYTES instead of streamed under the files limit.
    func streamedBodyLimit(_ head: HTTPRequest) -> Int? {
        guard let files, head.method == .post, let path = head.path, RoutePath.matches(path, Self.uploadPath) else { return nil }
        return files.maxBytes
    }

    func addFileRoutes(_ router: Router<PylonRequestContext>, _ files: FileRoutesConfig) {
        router.post(RouterPath("\(Self.uploadPath)")) { req, _ in
            let auth = try await auth(req)
            guard auth.isAdmin || auth.userID != nil else {
                throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in to upload files: send Authorization: Bearer <session token> or the session cookie")
            }
            // A JWT cannot be revoked (it outlives its account until it expires), so only a
            // session's or an API key's upload is bound to its owner's access.
            let stateless = jwts != nil && callerToken(req).map(SessionJWTs.looksLikeJWT) == true
            let record = try await Self.receiveUpload(req, owner: auth.isAdmin ? nil : auth.userID, ownerHoldsAccess: !stateless, files)
            var answer = record.json
            if case var .object(members) = answer {
                members.insert(("url", .string("/api/files/\(record.id)")), at: 1)
                answer = .object(members)
            }
            return HTTPSupport.json(answer, status: .created)
        }
        addFileAdminRoutes(router, files)
        router.get("/api/files/:id") { req, ctx in
            try FileNames.refuseCodeDestination(req.headers)
            let id = try ctx.parameters.require("id")
            let record = try await readable(req, id: id, files)
            return try await Self.download(req, record, files)
        }
        router.post("/api/files/:id/sign") { req, ctx in
            let id = try ctx.parameters.require("id")
            guard let signer = files.signer else {
                throw HostError(status: 501, code: "SIGNED_URLS_DISABLED", message: "signed file links are off: set PYLON_FILES_SECRET to a long random secret")
            }
            let record = try await owned(req, id: id, files)
            let b = try await body(req, empty: .object([]))
            guard case .object = b else { throw HostError.badRequest("INVALID_BODY", "the body must be a JSON object, e.g. {\"expires_in\": 600}") }
            var lifetime = FileSignature.defaultLifetime
            if let e = b["expires_in"], e != .null {
                guard let n = e.intValue, n >= 1, n <= FileSignature.maxLifetime else {
                    throw HostError.badRequest("INVALID_EXPIRES_IN", "expires_in must be a whole number of seconds from 1 to \(FileSignature.maxLifetime)")
                }
                lifetime = n
            }
            let exp = Int64(Date().timeIntervalSince1970) + lifetime
            let sig = signer.sign(id: record.id, expires: exp)
            return HTTPSupport.json(.object([("url", .string("/api/files/\(record.id)?exp=\(exp)&sig=\(sig)")),
                                             ("expires_at", .string(ISOTime.string(millis: exp * 1000)))]))
        }
        router.delete("/api/files/:id") { req, ctx in
            let id = try ctx.parameters.require("id")
            let record = try await owned(req, id: id, files)
            guard let deleted = try await files.records.delete(record.id) else { throw Self.fileNotFound }
            await Self.removeBytes(of: deleted, files)
            return HTTPSupport.json(.object([("deleted", true), ("id", .string(deleted.id))]))
        }
    }

    /// Deletes every file of `userID` (rows, then bytes) for the GDPR purge; returns how many.
    func purgeFiles(of userID: String, _ files: FileRoutesConfig) async throws -> Int {
        let removed = try await files.records.deleteAll(owner: userID)
        for r in removed { await Self.removeBytes(of: r, files) }
        return removed.count
    }

    /// Removes a deleted row's bytes; a failure is logged (no one can reach them any more).
    private static func removeBytes(of record: FileRecord, _ files: FileRoutesConfig) async {
        do {
            try await files.service.remove(record.storageKey)
        } catch {
            files.logger.warning("files: \(record.id) deleted, but its bytes could not be removed: \(error)")
        }
    }

    static let fileNotFound = HostError(status: 404, code: "FILE_NOT_FOUND", message: "no such file (or it is not yours)")

    /// The file `id` when the caller may manage it: its owner or an admin; 401 without
    /// credentials, 404 otherwise (another user's file looks like a missing one).
    private func owned(_ req: Request, id: String, _ files: FileRoutesConfig) async throws -> FileRecord {
        let auth = try await auth(req)
        guard auth.isAdmin || auth.userID != nil else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in to reach your files, or use a signed link")
        }
        guard let record = try await files.records.get(id), auth.isAdmin || record.owner == auth.userID else { throw Self.fileNotFound }
        return record
    }

    /// The file `id` when the request may read it: a valid signed link (checked first, so a
    /// bad link tells nothing about the file); else as `owned`, or, with a read rule, when
    /// the rule admits the caller (an anonymous caller it does not admit gets 401 whether or
    /// not the file exists).
    private func readable(_ req: Request, id: String, _ files: FileRoutesConfig) async throws -> FileRecord {
        let q = req.uri.queryParameters
        let exp = q.get("exp").map { String($0) }, sig = q.get("sig").map { String($0) }
        guard exp != nil || sig != nil else {
            guard let rule = files.readRule else { return try await owned(req, id: id, files) }
            let auth = try await auth(req)
            if let record = try await files.records.get(id),
               auth.isAdmin || (auth.userID != nil && record.owner == auth.userID) || rule.evaluate(PolicyInput(auth: auth, data: record.json)) {
                return record
            }
            if !auth.isAdmin && auth.userID == nil {
                throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in to reach this file, or use a signed link")
            }
            throw Self.fileNotFound
        }
        guard let signer = files.signer, let exp, let sig,
              signer.verify(id: id, exp: exp, sig: sig, now: Int64(Date().timeIntervalSince1970)) else {
            throw HostError(status: 403, code: "INVALID_SIGNATURE", message: "this file link is invalid or has expired; ask for a new one")
        }
        guard let record = try await files.records.get(id) else { throw Self.fileNotFound }
        return record
    }

    // MARK: Upload

    /// Bytes moved per plugin call, up and down (one hop to the files queue per piece).
    static let pieceBytes = 256 * 1024

    /// Reads the body into a new upload and records it; on any failure the upload is
    /// aborted and nothing is kept. `ownerHoldsAccess`: the row is written only while the
    /// owner still holds a session or an API key (`FileRecords.insert`), so an account
    /// deleted while its upload was in flight keeps no file.
    private static func receiveUpload(_ req: Request, owner: String?, ownerHoldsAccess: Bool, _ files: FileRoutesConfig) async throws -> FileRecord {
        let boundary = try MultipartReader.boundary(contentType: req.headers[.contentType])
        let writer = UploadWriter(files.service, quota: try await quotaGuard(req, owner: owner, raw: boundary == nil, files))
        var name = req.headers[HTTPField.Name("X-Filename")!] ?? "upload"
        // A raw body's type is checked before its bytes are read.
        var type = boundary == nil ? try FileNames.mediaType(req.headers[.contentType] ?? "application/octet-stream") : ""
        do {
            if let boundary {
                (name, type) = try await readMultipart(req.body, boundary: boundary, into: writer, limit: files.maxBytes)
            } else {
                for try await chunk in req.body { try await writer.append(chunk, limit: files.maxBytes) }
            }
            let upload = try await writer.commit()
            let record = FileRecord(id: FileRecord.newID(), storageKey: upload.key, owner: owner, name: FileNames.clean(name),
                                    type: type, size: upload.size, sha256: upload.sha256,
                                    createdAt: Int64(Date().timeIntervalSince1970 * 1000))
            do {
                try await files.records.insert(record, quota: owner == nil ? FileQuota(maxBytes: 0, maxFiles: 0) : files.quota,
                                               ownerHoldsAccess: ownerHoldsAccess)
            } catch {
                try? await files.service.remove(upload.key)
                throw error
            }
            return record
        } catch {
            await writer.abort()
            throw error
        }
    }

    /// The first part with a filename goes into `writer`, at most `limit` bytes of it (413
    /// past it, as a raw body: the file limit holds whatever the front let through); every
    /// other part is skipped. Returns the part's file name and content type (checked as
    /// its head arrives, `FileNames.mediaType`).
    private static func readMultipart(_ body: RequestBody, boundary: String, into writer: UploadWriter, limit: Int) async throws -> (String, String) {
        var reader = MultipartReader(boundary: boundary)
        var file: (name: String, type: String)?
        var inFile = false
        for try await chunk in body {
            for event in try reader.feed(chunk) {
                switch event {
                case let .part(fields):
                    guard file == nil, let name = MultipartReader.filename(fields) else { continue }
                    file = (name, try FileNames.mediaType(fields.first { $0.name == "content-type" }?.value ?? "application/octet-stream"))
                    inFile = true
                case let .data(bytes):
                    if inFile { try await writer.append(bytes, limit: limit) }
                case .partEnd:
                    inFile = false
                }
            }
        }
        try reader.finish()
        guard let file else { throw MultipartReader.invalid("the multipart body has no file part (a part with a filename)") }
        return file
    }

    // MARK: Download

    private static func download(_ req: Request, _ record: FileRecord, _ files: FileRoutesConfig) async throws -> Response {
        let service = files.service
        guard let size = try await service.size(of: record.storageKey) else {
            files.logger.warning("files: \(record.id) has a row but the plugin has no bytes for it")
            throw fileNotFound
        }
        let etag = "\"\(record.sha256)\""
        var headers = HTTPFields()
        headers[.contentType] = FileNames.servedType(record.type)
        headers[.eTag] = etag
        headers[.acceptRanges] = "bytes"
        headers[.cacheControl] = "private, no-cache"
        headers[.contentSecurityPolicy] = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
        headers[.contentDisposition] = FileNames.disposition(record.name, type: record.type)
        // No other site may embed the bytes (`<img>`, `<script>` from elsewhere); `nosniff`
        // comes with every answer (`HeaderCache.security`).
        headers[.crossOriginResourcePolicy] = "same-site"
        if let match = req.headers[.ifNoneMatch], ETagMatch.weak(match, etag) {
            return Response(status: .notModified, headers: headers)
        }
        var range: ClosedRange<Int64>? = nil
        if let spec = req.headers[.range], req.headers[.ifRange].map({ $0 == etag }) ?? true {
            switch ByteRange.parse(spec, size: size) {
            case .ignore: break
            case let .satisfiable(r): range = r
            case .unsatisfiable:
                headers[.contentRange] = "bytes */\(size)"
                headers[.contentType] = "application/json"
                headers[.contentDisposition] = nil
                let e = HostError(status: 416, code: "RANGE_NOT_SATISFIABLE", message: "the range is outside the file's \(size) bytes")
                var body = HTTPSupport.allocator.buffer(capacity: 128)
                body.writeBytes(JSONWriter.encode(.object([("error", .object([("code", .string(e.code)), ("message", .string(e.message))]))])))
                return Response(status: .rangeNotSatisfiable, headers: headers, body: .init(byteBuffer: body))
            }
        }
        let from = range?.lowerBound ?? 0
        let length = range.map { $0.upperBound - $0.lowerBound + 1 } ?? size
        if let range { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(size)" }
        headers[.contentLength] = String(length)
        let key = record.storageKey
        // No contentLength on the body: the front writes it as a stream, piece by piece as
        // the plugin reads it (Content-Length above frames it).
        let body = ResponseBody { writer in
            var offset = from
            let end = from + length
            while offset < end {
                let piece = try await service.read(key, offset: offset, count: Int(min(Int64(Self.pieceBytes), end - offset)))
                guard piece.readableBytes > 0 else {
                    throw HostError(status: 500, code: "FILE_TRUNCATED", message: "the stored file ended early")
                }
                offset += Int64(piece.readableBytes)
                try await writer.write(piece)
            }
            try await writer.finish(nil)
        }
        return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: body)
    }
}

/// Gathers an upload's chunks into pieces of `RouteContext.pieceBytes` and writes them
/// through the plugin; the upload is begun with the first piece (or at commit, for an
/// empty file). `quota` refuses the upload as soon as its bytes so far pass the owner's
/// quota (the insert checks it again, exactly). Used by one task.
private final class UploadWriter: @unchecked Sendable {
    private let service: FilesService
    private let quota: (@Sendable (Int64) throws -> Void)?
    private var upload: FilesService.Upload?
    private var piece = ByteBufferAllocator().buffer(capacity: 0)
    private var received = 0

    init(_ service: FilesService, quota: (@Sendable (Int64) throws -> Void)?) {
        self.service = service
        self.quota = quota
    }

    func append(_ chunk: ByteBuffer, limit: Int) async throws {
        received += chunk.readableBytes
        if received > limit { throw HTTPFault.bodyTooLarge(limit: limit).error }
        try quota?(Int64(received))
        var c = chunk
        piece.writeBuffer(&c)
        if piece.readableBytes >= RouteContext.pieceBytes { try await flush() }
    }

    private func flush() async throws {
        let u: FilesService.Upload
        if let upload { u = upload } else {
            u = try await service.begin()
            upload = u
        }
        guard piece.readableBytes > 0 else { return }
        let out = piece
        piece = ByteBufferAllocator().buffer(capacity: 0)
        try await service.write(u, out)
    }

    func commit() async throws -> FilesService.Upload {
        try await flush()
        try await service.commit(upload!)
        return upload!
    }

    func abort() async {
        if let upload { await service.abort(upload) }
    }
}

/// A `Range` header (RFC 9110 §14.2) against a file of `size` bytes: one range, given as
/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, each number one or more digits (§14.1.1: no sign).
/// Several ranges, other units and malformed values (`bytes=--1`, `bytes=5-3`) are ignored:
/// the whole file is sent, as §14.2 says of an invalid header. A valid range past the end
/// is unsatisfiable however large its numbers (`bytes=9223372036854775807-`: 416).
enum ByteRange: Equatable {
    case ignore
    case satisfiable(ClosedRange<Int64>)
    case unsatisfiable

    static func parse(_ header: String, size: Int64) -> ByteRange {
        let h = header.trimmingCharacters(in: .whitespaces)
        guard h.lowercased().hasPrefix("bytes=") else { return .ignore }
        let spec = h.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .ignore }
        let first = spec[..<dash].trimmingCharacters(in: .whitespaces), last = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        // Digits only; a number past Int64 saturates (it is past the end of any file).
        func number(_ s: String) -> Int64? {
            guard !s.isEmpty else { return nil }
            var n: Int64 = 0
            for c in s.utf8 {
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
                let (times, o1) = n.multipliedReportingOverflow(by: 10)
                let (plus, o2) = times.addingReportingOverflow(Int64(c - UInt8(ascii: "0")))
                n = o1 || o2 ? .max : plus
            }
            return n
        }
        if first.isEmpty {
            guard let n = number(last) else { return .ignore }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .satisfiable(max(0, size - n)...(size - 1))
        }
        guard let a = number(first) else { return .ignore }
        let b: Int64
        if last.isEmpty { b = size - 1 } else {
            guard let n = number(last) else { return .ignore }
            guard n >= a else { return .ignore }
            b = min(n, size - 1)
        }
        guard a < size else { return .unsatisfiable }
        return .satisfiable(a...b)
    }
}

/// `If-None-Match` (RFC 9110 §13.1.2): the weak comparison — `W/"x"` matches `"x"` — against
/// any tag of the list, or `*`.
enum ETagMatch {
    static func weak(_ header: String, _ etag: String) -> Bool {
        let opaque = etag.hasPrefix("W/") ? String(etag.dropFirst(2)) : etag
        return header.split(separator: ",").contains { raw in
            let tag = raw.trimmingCharacters(in: .whitespaces)
            return tag == "*" || (tag.hasPrefix("W/") ? String(tag.dropFirst(2)) : tag) == opaque
        }
    }
}

/// File names and types as stored and sent back: only metadata, never a path.
enum FileNames {
    /// The last path component of `name` without control characters, at most 255 bytes;
    /// "upload" when nothing is left. A name like "../../etc/passwd" becomes "passwd".
    static func clean(_ name: String) -> String {
        let last = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        var out = String(String.UnicodeScalarView(last.unicodeScalars.filter { $0.value >= 32 && $0.value != 127 }))
        if out == "." || out == ".." { out = "" }
        while out.utf8.count > 255 { out.removeLast() }
        return out.isEmpty ? "upload" : out
    }

    /// `type` without surrounding spaces when it is exactly one media type (`StrictMediaType`);
    /// else 400 INVALID_CONTENT_TYPE: a list or a malformed type is refused rather than
    /// stored, since browsers and this host would read it differently.
    static func mediaType(_ type: String) throws(HostError) -> String {
        guard StrictMediaType.parse(type) != nil else {
            let shown = type.count > 80 ? String(type.prefix(80)) + "…" : type
            throw HostError.badRequest("INVALID_CONTENT_TYPE", "the file's Content-Type \"\(shown)\" is not one media type: send type/subtype with optional ;name=value parameters (token or quoted value, printable ASCII, at most \(StrictMediaType.maxBytes) bytes), e.g. text/plain; charset=utf-8, or application/octet-stream")
        }
        return type.trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
    }

    /// The type a stored file is sent with: its own, or application/octet-stream for a row
    /// stored before types were checked (or restored from an archive) that is not one type.
    static func servedType(_ stored: String) -> String {
        StrictMediaType.parse(stored) == nil ? "application/octet-stream" : stored
    }

    /// Whether a browser may show the file inline (`StrictMediaType.showsInline`).
    static func showsInline(_ type: String) -> Bool {
        StrictMediaType.parse(type)?.showsInline ?? false
    }

    private static let secFetchDest = HTTPField.Name("Sec-Fetch-Dest")!

    /// `Sec-Fetch-Dest` values of loads that run or apply the bytes as code or style.
    static let codeDestinations: Set<String> = ["script", "worker", "sharedworker", "serviceworker", "audioworklet", "paintworklet", "xslt", "style"]

    /// Refuses (403 FILE_DESTINATION_REFUSED) a download a browser would run as a script,
    /// worker, XSLT or stylesheet: the stored type is served as uploaded, so an uploaded
    /// `application/javascript` would otherwise pass a `script-src 'self'` on this origin.
    static func refuseCodeDestination(_ headers: HTTPFields) throws(HostError) {
        guard let dest = headers[secFetchDest], codeDestinations.contains(dest.lowercased()) else { return }
        throw HostError(status: 403, code: "FILE_DESTINATION_REFUSED",
                        message: "files are not served to be run or applied as code (Sec-Fetch-Dest: \(dest.prefix(40))): fetch() the file or link to it instead of loading it as a script, worker or stylesheet")
    }

    /// `inline` or `attachment`, with the name as an RFC 6266 `filename*`.
    static func disposition(_ name: String, type: String) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "!#$&+-.^_`|~")).subtracting(CharacterSet(charactersIn: "%"))
        let encoded = name.addingPercentEncoding(withAllowedCharacters: allowed) ?? "upload"
        return "\(showsInline(type) ? "inline" : "attachment"); filename*=UTF-8''\(encoded)"
    }
}
