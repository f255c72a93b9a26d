import PylonJSON

/// The file routes (`FileRoutes`), described when a plugin serves `pylon.files/1`.
extension OpenAPIDocument {
    static let fileRow = object([
        ("id", string), ("owner", nullable(string)), ("name", string), ("type", string), ("size", count),
        ("sha256", ["type": "string", "pattern": "^[0-9a-f]{64}$"]), ("created_at", string),
    ], required: ["id", "owner", "name", "type", "size", "sha256", "created_at"])

    static let filePaths: [(String, JSONValue)] = {
        let tags = ["files"]
        let binary: JSONValue = ["type": "string", "format": "binary"]
        let bytes: JSONValue = .object([("*/*", ["schema": binary])])
        let uploaded = object([("id", string), ("url", string), ("owner", nullable(string)), ("name", string), ("type", string),
                               ("size", count), ("sha256", string), ("created_at", string)],
                              required: ["id", "url", "size", "name", "type", "sha256"])
        // Not required: an empty raw body is an empty file.
        let uploadBody: JSONValue = .object([
            ("required", false),
            ("content", .object([
                ("application/octet-stream", ["schema": binary]),
                ("multipart/form-data", ["schema": object([("file", binary)], required: ["file"])]),
            ])),
        ])
        let filename: JSONValue = .object([("name", "X-Filename"), ("in", "header"), ("required", false),
                                           ("description", "the file's name for a raw body (default \"upload\"); only its last path component is kept"),
                                           ("schema", string)])
        let id = pathParam("id")
        let download: (String) -> JSONValue = { what in .object([("description", .string(what)), ("content", bytes)]) }
        return [
            ("/api/files/upload", ["post": op("uploadFile", "upload a file: the raw body (X-Filename, Content-Type) or multipart/form-data (the first part with a filename)",
                                              access: .user, tags: tags, parameters: [filename], body: uploadBody,
                                              responses: [("201", ok(uploaded, "stored"))], errors: ["507"])]),
            ("/api/files/{id}", [
                "get": op("getFile", "the file's bytes with its stored type, ETag and Range support; the owner's, an admin's, or with a signed link",
                          access: .user, tags: tags,
                          parameters: [id, query("exp", string, "a signed link's expiry (Unix seconds)"), query("sig", string, "a signed link's signature")],
                          responses: [("200", download("the whole file")), ("206", download("the requested range")),
                                      ("304", ["description": "unchanged (If-None-Match)"]), ("416", errorRef("416"))]),
                "delete": op("deleteFile", "delete a file (its owner or an admin)", access: .user, tags: tags, parameters: [id],
                             responses: [("200", ok(object([("deleted", boolean), ("id", string)], required: ["deleted", "id"])))]),
            ]),
            ("/api/files/usage", ["get": op("fileUsage", "the caller's files and bytes, and the per-user limits (null: unlimited)",
                                            access: .user, tags: tags,
                                            responses: [("200", ok(object([("files", count), ("bytes", count), ("max_files", nullable(count)),
                                                                           ("max_bytes", nullable(count))],
                                                                          required: ["files", "bytes", "max_files", "max_bytes"])))])]),
            ("/api/files/sweep", ["post": op("sweepFiles", "delete stored bytes no file row names, older than PYLON_FILES_ORPHAN_GRACE_SECS",
                                             access: .admin, tags: tags,
                                             responses: [("200", ok(object([("listed", count), ("removed", count), ("bytes_removed", count)],
                                                                           required: ["listed", "removed", "bytes_removed"])))],
                                             errors: ["409", "501"])]),
            ("/api/files/{id}/sign", ["post": op("signFile", "a short-lived signed download link (for <img src> without a cookie)",
                                                 access: .user, tags: tags, parameters: [id],
                                                 body: body(object([("expires_in", ["type": "integer", "minimum": 1, "maximum": 604_800])]), required: false),
                                                 responses: [("200", ok(object([("url", string), ("expires_at", string)], required: ["url", "expires_at"])))],
                                                 errors: ["501"])]),
        ]
    }()
}
