import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PylonCore
import PylonJSON

/// JSON responses, error mapping and the headers every response carries.
enum HTTPSupport {
    static let allocator = ByteBufferAllocator()

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        bytes(JSONWriter.encode(value), status: status)
    }

    static func bytes(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        var buf = allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        return Response(status: status, headers: jsonHeaders, body: .init(byteBuffer: buf))
    }

    /// Built once (a field literal validates its name and value each time).
    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    static func error(_ e: HostError) -> Response {
        var r = json(e.body, status: HTTPResponse.Status(code: e.status))
        addFields(of: e, to: &r.headers)
        return r
    }

    /// The header fields an error answer carries beside its body (`Retry-After`).
    static func addFields(of e: HostError, to fields: inout HTTPFields) {
        if let wait = e.retryAfter { fields[.retryAfter] = String(wait) }
    }

    /// Reads and parses a JSON body, enforcing the size limit. Empty body → `empty`.
    static func body(_ request: Request, limit: Int, empty: JSONValue? = nil) async throws -> JSONValue {
        try body(try await rawBody(request, limit: limit), limit: limit, empty: empty)
    }

    /// The same for a body already collected (the routes that finish by callback, HTTP/ImmediateRoutes.swift).
    static func body(_ buffer: ByteBuffer, limit: Int, empty: JSONValue? = nil) throws -> JSONValue {
        if buffer.readableBytes > limit { throw tooLarge(limit) }
        if buffer.readableBytes == 0, let empty { return empty }
        do {
            return try JSONParser.parse(Array(buffer.readableBytesView))
        } catch {
            throw invalidJSON(error)
        }
    }

    /// The body as JSON text, checked but not parsed (for JSON that is only passed on);
    /// `empty` when there is no body.
    static func jsonBytes(_ request: Request, limit: Int, empty: [UInt8]) async throws -> [UInt8] {
        try jsonBytes(try await rawBody(request, limit: limit), limit: limit, empty: empty)
    }

    /// The same for a body already collected (the routes that finish by callback, HTTP/ImmediateRoutes.swift).
    static func jsonBytes(_ buffer: ByteBuffer, limit: Int, empty: [UInt8]) throws -> [UInt8] {
        if buffer.readableBytes > limit { throw tooLarge(limit) }
        if buffer.readableBytes == 0 { return empty }
        let bytes = Array(buffer.readableBytesView)
        do {
            try JSONParser.validate(bytes)
        } catch {
            throw invalidJSON(error)
        }
        return bytes
    }

    private static func invalidJSON(_ error: JSONParseError) -> HostError {
        HostError(status: 400, code: "INVALID_JSON", message: "Invalid request body: \(error)")
    }
}

extension HTTPSupport {
    /// The body as sent, enforcing the size limit (413 PAYLOAD_TOO_LARGE).
    static func rawBody(_ request: Request, limit: Int) async throws -> ByteBuffer {
        var req = request
        do {
            return try await req.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge(limit)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw tooLarge(limit)
        }
    }

    fileprivate static func tooLarge(_ limit: Int) -> HostError {
        HostError(status: 413, code: "PAYLOAD_TOO_LARGE", message: "the request body is larger than \(limit) bytes; send less data per request (PYLON_MAX_BODY_BYTES raises the limit)")
    }
}

enum HeaderCache {
    static let security: HTTPFields = [
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "strict-origin-when-cross-origin",
        HTTPField.Name("X-XSS-Protection")!: "0",
        HTTPField.Name("Permissions-Policy")!: "camera=(), microphone=(), geolocation=()",
    ]
}
