import PylonCore
import PylonPlugins
import PylonJSON

/// `GET /api/openapi.json`: an OpenAPI 3.1 description of exactly what this host serves,
/// built from the manifest and the routes it registers (pylon-aux.md §6.4 describes
/// Pylon's 3.0 version; this one adds every route, request bodies and the error envelope).
///
/// Why it is generated and not written by hand: the entity routes take and return rows
/// whose shape is the manifest's, so each entity gets its own paths and schemas (a row, an
/// insert body, a patch body, a filter), and a route that no plugin serves (functions,
/// cache) is left out rather than described and answered 501. The document is checked in
/// the test suite by `openapi-spec-validator` and by schemathesis against a live host
/// (OpenAPITests), so a route whose answers drift from it fails there.
///
/// Left out on purpose: `GET /studio` and `/studio/*` (StudioRoutes), the admin studio's
/// HTML, script and style. They are a web page for people, not an API: no JSON, no
/// parameters, any path under /studio answers the page, and the data the page shows comes
/// from the API routes described here. README's HTTP API table lists them.
enum OpenAPIDocument {
    /// What the document describes besides the manifest.
    struct Surface {
        var manifest: Manifest
        var cookieName: String
        /// `/metrics` needs the admin token only outside `--dev`.
        var dev: Bool
        var functions: Bool
        var cache: Bool
        var oauth = false
        var files = false
        /// Capabilities with no plugin (their route prefixes answer 501): listed, not described.
        var unavailable: [CapabilityInfo]
        /// A plugin serves `pylon.auth.code/1` (email codes, links, password reset).
        var codes = false
        /// Plugins serve `pylon.shard.sim/1` (the shard routes).
        var shards = false
    }

    static func build(_ s: Surface) -> JSONValue {
        var paths: [(String, JSONValue)] = []
        paths += systemPaths(s)
        paths += authPaths
        if s.codes { paths += authCodePaths(dev: s.dev) }
        paths += orgPaths(dev: s.dev)
        for e in s.manifest.entities { paths += entityPaths(e) }
        paths += dataPaths(s.manifest)
        paths += syncPaths
        paths += adminDataPaths(s)
        if s.functions { paths += functionPaths + jobPaths + workflowPaths }
        if s.cache { paths += cachePaths }
        if s.oauth { paths += oauthPaths }
        if s.files { paths += filePaths }
        paths += roomPaths
        if s.shards { paths += shardPaths + matchmakerPaths }
        var schemas: [(String, JSONValue)] = sharedSchemas
        for e in s.manifest.entities { schemas += entitySchemas(e) }
        let m = s.manifest
        var doc: [(String, JSONValue)] = [
            ("openapi", "3.1.0"),
            ("info", .object([
                ("title", .string(m.name.isEmpty ? "Pylon app" : m.name)),
                ("version", .string(m.version.isEmpty ? "0.0.0" : m.version)),
                ("description", .string("The HTTP API of this pylon-host (\(PylonVersion.string)) for the app's manifest. Errors are always {\"error\":{\"code\",\"message\"}} with a stable code.")),
            ])),
            ("servers", [["url": "/"]]),
            ("paths", .object(paths)),
            ("components", .object([
                ("schemas", .object(schemas)),
                ("responses", errorResponses),
                ("securitySchemes", securitySchemes(s.cookieName)),
            ])),
        ]
        if !s.unavailable.isEmpty {
            doc.append(("x-pylon-unavailable", .array(s.unavailable.filter { !$0.routePrefixes.isEmpty }.map {
                .object([("capability", .string($0.id)), ("routePrefixes", .array($0.routePrefixes.map { .string($0) })),
                         ("status", 501), ("code", "CAPABILITY_UNAVAILABLE")])
            })))
        }
        return .object(doc)
    }

    // MARK: - Building blocks

    static func ref(_ schema: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(schema)")] }

    static func object(_ properties: [(String, JSONValue)], required: [String] = [], closed: Bool = false) -> JSONValue {
        var o: [(String, JSONValue)] = [("type", "object"), ("properties", .object(properties))]
        if !required.isEmpty { o.append(("required", .array(required.map { .string($0) }))) }
        if closed { o.append(("additionalProperties", false)) }
        return .object(o)
    }

    static let string: JSONValue = ["type": "string"]
    static let boolean: JSONValue = ["type": "boolean"]
    static let int64: JSONValue = ["type": "integer", "minimum": .int(Int64.min), "maximum": .int(Int64.max)]
    static let count: JSONValue = ["type": "integer", "minimum": 0, "maximum": .int(Int64.max)]
    static let anyObject: JSONValue = ["type": "object"]
    static let anyValue: JSONValue = [:]

    /// Who may call an operation. `{}` in a list means "anonymous too".
    enum Access { case anyone, user, admin }

    static func security(_ a: Access) -> JSONValue {
        switch a {
        case .anyone: return [[:], ["bearer": []], ["cookie": []], ["admin": []]]
        case .user: return [["bearer": []], ["cookie": []]]
        case .admin: return [["admin": []]]
        }
    }

    static func securitySchemes(_ cookie: String) -> JSONValue {
        .object([
            ("bearer", ["type": "http", "scheme": "bearer",
                        "description": "a session token (pylon_ + 64 hex) from /api/auth/session, /api/auth/guest or /api/auth/anonymous"]),
            ("cookie", .object([("type", "apiKey"), ("in", "cookie"), ("name", .string(cookie)),
                                ("description", "the session token as a cookie; writes must come from a trusted origin (403 CSRF_REJECTED)")])),
            ("admin", ["type": "http", "scheme": "bearer", "description": "PYLON_ADMIN_TOKEN: every operation, policies bypassed"]),
        ])
    }

    /// `schema`, or JSON null (which the host reads as "not given").
    static func nullable(_ schema: JSONValue) -> JSONValue { ["anyOf": [schema, ["type": "null"]]] }

    static func json(_ schema: JSONValue) -> JSONValue { ["application/json": ["schema": schema]] }

    static func body(_ schema: JSONValue, required: Bool = true) -> JSONValue {
        .object([("required", .bool(required)), ("content", json(schema))])
    }

    static func ok(_ schema: JSONValue, _ what: String = "OK") -> JSONValue {
        .object([("description", .string(what)), ("content", json(schema))])
    }

    /// Statuses every API operation may answer: 400 bad input, 403, 404, 413 body too large,
    /// 429 over the request limit.
    static let commonErrors = ["400", "403", "404", "413", "429"]

    static func errorRef(_ status: String) -> JSONValue { ["$ref": .string("#/components/responses/Error\(status)")] }

    static let errorResponses: JSONValue = {
        let described: [(String, String)] = [
            ("400", "bad input (INVALID_DATA, INVALID_QUERY, INVALID_PATH: a path parameter with bad percent-encoding or not UTF-8, MISSING_FIELD, ENTITY_NOT_FOUND, …)"),
            ("401", "a session is required (AUTH_REQUIRED), or the credentials are wrong (INVALID_CREDENTIALS)"),
            ("403", "not allowed (FORBIDDEN, POLICY_DENIED, CSRF_REJECTED, API_KEY_AUTH_FORBIDDEN)"),
            ("404", "no such row, key or route (NOT_FOUND)"),
            ("409", "a unique value is taken (UNIQUE_VIOLATION, EMAIL_IN_USE)"),
            ("410", "the cursor must be resynced (RESYNC_REQUIRED, with oldest_seq)"),
            ("413", "the body is over PYLON_MAX_BODY_BYTES, or an upload over PYLON_FILES_MAX_BYTES (PAYLOAD_TOO_LARGE)"),
            ("416", "the range is outside the file (RANGE_NOT_SATISFIABLE, with Content-Range: bytes */size)"),
            ("429", "over a request limit (RATE_LIMITED, with Retry-After)"),
            ("502", "an identity provider failed or could not be reached (OAUTH_TOKEN_EXCHANGE_FAILED, OAUTH_ID_TOKEN_INVALID, OAUTH_PROVIDER_UNREACHABLE, REFRESH_FAILED), or a function returned what is not JSON the host reads (INVALID_RESULT)"),
            ("501", "a capability is not available (no function runtime, no user entity for passwords, no API key pepper)"),
            ("503", "busy or stopping (the function runtime; too many sign-ins being checked: AUTH_BUSY)"),
            ("504", "the function call timed out"),
            ("507", "the server's disk is full (DISK_FULL): nothing was stored"),
        ]
        return .object(described.map { status, what in
            var r: [(String, JSONValue)] = [("description", .string(what)), ("content", json(ref("Error")))]
            if status == "429" {
                r.append(("headers", ["Retry-After": ["description": "seconds to wait", "schema": ["type": "integer"]]]))
            }
            return ("Error\(status)", .object(r))
        })
    }()

    /// One operation: `responses` are the success answers; the error statuses named in
    /// `errors` (plus the common ones) answer with the error envelope.
    static func op(_ id: String, _ summary: String, access: Access, tags: [String], parameters: [JSONValue] = [],
                   body: JSONValue? = nil, responses: [(String, JSONValue)], errors: [String] = []) -> JSONValue {
        var o: [(String, JSONValue)] = [("operationId", .string(id)), ("summary", .string(summary)),
                                        ("tags", .array(tags.map { .string($0) })), ("security", security(access))]
        if !parameters.isEmpty { o.append(("parameters", .array(parameters))) }
        if let body { o.append(("requestBody", body)) }
        var all = responses
        var statuses = Set(responses.map(\.0))
        var extra = commonErrors + errors
        if access != .anyone { extra.append(access == .user ? "401" : "403") }
        for status in extra.sorted() where !statuses.contains(status) {
            statuses.insert(status)
            all.append((status, errorRef(status)))
        }
        o.append(("responses", .object(all)))
        return .object(o)
    }

    static func query(_ name: String, _ schema: JSONValue, _ what: String) -> JSONValue {
        .object([("name", .string(name)), ("in", "query"), ("required", false), ("description", .string(what)), ("schema", schema)])
    }

    /// A path parameter; its description names the 400 a malformed one gets (`PathParameters`).
    static func pathParam(_ name: String, _ schema: JSONValue = ["type": "string", "minLength": 1]) -> JSONValue {
        .object([("name", .string(name)), ("in", "path"), ("required", true), ("description", .string(pathParamNote)), ("schema", schema)])
    }

    static let pathParamNote = "percent-encoded; bad percent-encoding, or bytes that are not UTF-8, is 400 INVALID_PATH"

    // MARK: - Schemas

    static let sharedSchemas: [(String, JSONValue)] = [
        ("Error", object([("error", object([("code", ["type": "string", "pattern": "^[A-Z0-9_]+$"]), ("message", string),
                                            ("hint", string)], required: ["code", "message"]))], required: ["error"])),
        ("Auth", object([("user_id", ["type": ["string", "null"]]), ("is_admin", boolean), ("is_guest", boolean),
                         ("roles", ["type": "array", "items": string]), ("tenant_id", string)],
                        required: ["user_id", "is_admin", "roles"])),
        ("ChangeEvent", object([("seq", count), ("entity", string), ("row_id", string),
                                ("kind", ["type": "string", "enum": ["insert", "update", "delete"]]),
                                ("data", anyObject), ("timestamp", string)], required: ["seq", "entity", "row_id", "kind"])),
        ("Operation", object([("op", ["type": "string", "enum": ["insert", "update", "delete"]]), ("entity", string),
                              ("id", ["type": ["string", "null"]]), ("data", ["type": ["object", "null"]])], required: ["op", "entity"])),
    ]

    /// A field's value in a row; `null` too when the field is optional.
    static func fieldSchema(_ f: Field) -> JSONValue {
        var o: [(String, JSONValue)]
        switch f.type {
        case .int?: o = [("type", "integer"), ("minimum", .int(Int64.min)), ("maximum", .int(Int64.max))]
        case .float?: o = [("type", "number")]
        case .bool?: o = [("type", "boolean")]
        case .datetime?: o = [("type", "string"), ("description", "a date-time, by convention ISO 8601 (stored as sent)")]
        case let .id(target)?: o = [("type", "string"), ("description", .string("the id of a \(target) row"))]
        case .richtext?: o = [("type", "string"), ("description", "rich text")]
        case .string?, nil: o = [("type", "string")]
        }
        if f.optional, case let .string(t)? = o.first?.1 { o[0].1 = [.string(t), "null"] }
        if f.unique { o.append(("x-pylon-unique", true)) }
        return .object(o)
    }

    static func entitySchemas(_ e: Entity) -> [(String, JSONValue)] {
        let fields = e.fields.map { ($0.name, fieldSchema($0)) }
        let idIgnored: JSONValue = ["description": "ignored: the host assigns ids"]
        return [
            (e.name, object([("id", string)] + fields, required: ["id"] + e.fields.map(\.name))),
            ("\(e.name)Insert", object([("id", idIgnored)] + fields, required: e.fields.filter { !$0.optional }.map(\.name), closed: true)),
            ("\(e.name)Patch", object(fields, closed: true).setting("minProperties", 1)),
            ("\(e.name)Filter", filterSchema(e, paging: true)),
            ("\(e.name)Where", filterSchema(e, paging: false)),
        ]
    }

    /// The filter language of `POST /api/query/E` (README "HTTP API"): field → value, null,
    /// or an operator object (`$like` on text fields only); with `paging`, also `$order`,
    /// `$limit`, `$offset`, and `$search` when searchable (search `filters` take fields only).
    static func filterSchema(_ e: Entity, paging: Bool) -> JSONValue {
        var props: [(String, JSONValue)] = []
        if paging {
            props += [
                ("$order", ["type": "object", "propertyNames": ["enum": .array((["id"] + e.fields.map(\.name)).map { .string($0) })],
                            "additionalProperties": ["description": "\"desc\" (any case) sorts descending, anything else ascending"]]),
                ("$limit", count), ("$offset", count),
            ]
            if e.search.map({ !$0.text.isEmpty }) == true {
                props.append(("$search", ["type": "string", "description": "full-text query (FTS5 syntax on SQLite)"]))
            }
        }
        let idField = Field(name: "id", typeName: "string", optional: false, unique: true)
        for f in [idField] + e.fields {
            let scalar = fieldSchema(Field(name: f.name, typeName: f.typeName, optional: true, unique: false))
            var operators: [(String, JSONValue)] = [("$eq", scalar), ("$not", scalar), ("$ne", scalar), ("$gt", scalar),
                                                    ("$gte", scalar), ("$lt", scalar), ("$lte", scalar)]
            if f.type?.storage == .text { operators.append(("$like", string)) }
            operators.append(("$in", ["type": "array", "items": scalar]))
            let ops = object(operators, closed: true)
            props.append((f.name, ["anyOf": [scalar, ops.setting("minProperties", 1)]]))
        }
        return object(props, closed: true)
    }

    // MARK: - Paths

    static func systemPaths(_ s: Surface) -> [(String, JSONValue)] {
        [
            ("/health", ["get": op("health", "liveness", access: .anyone, tags: ["system"], responses: [
                ("200", ok(object([("status", ["const": "ok"]), ("version", string), ("uptime_secs", count)],
                                  required: ["status", "version", "uptime_secs"]))),
            ])]),
            ("/metrics", ["get": op("metrics", "request counters and gauges", access: s.dev ? .anyone : .admin, tags: ["system"], responses: [
                ("200", .object([("description", "Prometheus text when Accept names text/plain or application/openmetrics-text, else JSON"),
                                 ("content", ["application/json": ["schema": anyObject], "text/plain": ["schema": string]])])),
            ])]),
            ("/api/manifest", ["get": op("getManifest", "the manifest (policy expressions blanked unless ?full=1 with the admin token)",
                                         access: .anyone, tags: ["system"],
                                         parameters: [query("full", string, "1 or true: with policies (admin); anything else: without")],
                                         responses: [("200", ok(anyObject))])]),
            ("/api/openapi.json", ["get": op("openapi", "this document", access: .anyone, tags: ["system"],
                                             responses: [("200", ok(object([("openapi", string)], required: ["openapi", "info", "paths"])))])]),
        ]
    }

    static let tokenReply = object([("token", string), ("user_id", string), ("expires_at", ["type": "integer"])],
                                   required: ["token", "user_id"])

    static let authPaths: [(String, JSONValue)] = [
        ("/api/auth/me", ["get": op("me", "the caller", access: .anyone, tags: ["auth"], responses: [("200", ok(ref("Auth")))])]),
        ("/api/auth/jwt", ["post": op("jwt", "a short-lived HS256 JWT for the caller ({sub,iat,exp,iss,tenant_id,roles}); never admin rights",
                                      access: .anyone, tags: ["auth"],
                                      responses: [("200", ok(object([("token", string), ("expires_at", ["type": "integer"])],
                                                                    required: ["token", "expires_at"])))], errors: ["401", "501"])]),
        ("/api/auth/select-org", ["post": op(
            "selectOrg", "act in one of the caller's organisations (a member by /api/auth/orgs, or by a row of the app's OrgMember entity), or none with null (session only)",
            access: .user, tags: ["auth"], body: body(object([("orgId", ["type": ["string", "null"]])], required: ["orgId"])),
            responses: [("200", ok(object([("tenantId", ["type": ["string", "null"]])], required: ["tenantId"])))])]),
        ("/api/auth/upgrade", ["post": op(
            "upgrade", "a guest session becomes a user's ({user_id}; --dev: the caller's own session; the admin token: the session named by token)",
            access: .anyone, tags: ["auth"],
            body: body(object([("user_id", ["type": "string", "minLength": 1]), ("token", string)], required: ["user_id"])),
            responses: [("200", ok(object([("upgraded", boolean), ("user_id", string)], required: ["upgraded", "user_id"])))])]),
        ("/api/auth/refresh", ["post": op("refresh", "a new token for the caller's session (same user, device, organisation); the old one ends",
                                          access: .anyone, tags: ["auth"], responses: [("200", ok(tokenReply))], errors: ["401"])]),
        ("/api/auth/account", ["delete": op(
            "deleteAccount", "delete the caller: sessions, API keys, password, organisation memberships and user row (session only)", access: .user, tags: ["auth"],
            responses: [("200", ok(object([("deleted", ["const": true]), ("revoked_sessions", count), ("revoked_api_keys", count),
                                           ("unlinked_accounts", count), ("deleted_files", count), ("left_orgs", count)], required: ["deleted"])))])]),
        ("/api/auth/session", [
            "get": op("getSession", "the caller and their user row, without credentials or hidden fields", access: .anyone,
                      tags: ["auth"], responses: [("200", ok(object([("session", ref("Auth")), ("user", ["type": ["object", "null"]])],
                                                                    required: ["session", "user"])))]),
            "post": op("createSession", "mint a session for any user id (--dev or admin)", access: .anyone, tags: ["auth"],
                       body: body(object([("user_id", ["type": "string", "minLength": 1])], required: ["user_id"])),
                       responses: [("201", ok(tokenReply, "created"))]),
            "delete": op("deleteSession", "sign out (as POST /api/auth/logout)", access: .anyone, tags: ["auth"],
                         responses: [("200", ok(object([("revoked", boolean)], required: ["revoked"])))]),
        ]),
        ("/api/auth/logout", ["post": op("logout", "sign out: revokes the caller's session and clears the cookie", access: .anyone,
                                         tags: ["auth"], responses: [("200", ok(object([("revoked", boolean)], required: ["revoked"])))])]),
        ("/api/auth/guest", ["post": op("guest", "a new guest session (counted in the SEND auth bucket)", access: .anyone, tags: ["auth"],
                                        responses: [("201", ok(object([("token", string), ("user_id", string), ("guest", ["const": true])],
                                                                      required: ["token", "user_id", "guest"]), "created"))])]),
        ("/api/auth/anonymous", ["post": op("anonymous", "better-auth's alias of guest", access: .anyone, tags: ["auth"],
                                            responses: [("200", ok(object([("token", string), ("user_id", string), ("is_guest", ["const": true]),
                                                                           ("expires_at", ["type": "integer"])],
                                                                          required: ["token", "user_id", "is_guest", "expires_at"])))])]),
        ("/api/auth/sessions", [
            "get": op("listSessions", "the caller's live sessions, newest first", access: .user, tags: ["auth"],
                      responses: [("200", ok(["type": "array", "items": object([
                          ("id", string), ("user_id", string), ("device", ["type": ["string", "null"]]),
                          ("created_at", ["type": "integer"]), ("expires_at", ["type": "integer"]), ("current", boolean),
                      ], required: ["id", "user_id", "device", "created_at", "expires_at", "current"])]))]),
            "delete": op("revokeSessions", "revoke all the caller's sessions", access: .user, tags: ["auth"],
                         responses: [("200", ok(object([("revoked_count", count)], required: ["revoked_count"])))]),
        ]),
        ("/api/auth/password/register", ["post": op(
            "passwordRegister", "a new user with an email and a password (at least 10 characters); signs in (SEND auth bucket)",
            access: .anyone, tags: ["auth"],
            body: body(object([("email", string), ("password", string), ("displayName", string)], required: ["email", "password"])),
            responses: [("200", ok(tokenReply))], errors: ["409", "501", "503"])]),
        ("/api/auth/password/login", ["post": op(
            "passwordLogin", "sign in with an email and a password (LOGIN auth bucket)", access: .anyone, tags: ["auth"],
            body: body(object([("email", string), ("password", string)], required: ["email", "password"])),
            responses: [("200", ok(tokenReply))], errors: ["401", "501", "503"])]),
        ("/api/auth/password/change", ["post": op(
            "passwordChange", "replace the caller's password; ends every earlier session and signs in anew", access: .user,
            tags: ["auth"],
            body: body(object([("currentPassword", string), ("newPassword", string)], required: ["currentPassword", "newPassword"])),
            responses: [("200", ok(object([("changed", ["const": true]), ("token", string), ("user_id", string),
                                           ("expires_at", ["type": "integer"])], required: ["changed", "token", "user_id"])))],
            errors: ["501", "503"])]),
        ("/api/auth/api-keys", [
            "post": op("createApiKey", "a new API key for the caller (the token is shown once; session only)", access: .user,
                       tags: ["auth"],
                       body: body(object([("name", ["type": "string", "maxLength": 100]), ("scopes", ["type": "string", "maxLength": 1000]),
                                          ("expires_at", ["type": "integer"])])),
                       responses: [("200", ok(object([("key", string), ("id", string), ("prefix", string), ("name", string),
                                                      ("scopes", ["type": ["string", "null"]]), ("expires_at", ["type": ["integer", "null"]]),
                                                      ("created_at", ["type": "integer"])], required: ["key", "id", "prefix", "name"])))],
                       errors: ["501"]),
            "get": op("listApiKeys", "the caller's API keys, newest first, without secrets (session only)", access: .user,
                      tags: ["auth"], responses: [("200", ok(["type": "array", "items": object([
                          ("id", string), ("prefix", string), ("name", string), ("scopes", ["type": ["string", "null"]]),
                          ("expires_at", ["type": ["integer", "null"]]), ("last_used_at", ["type": ["integer", "null"]]),
                          ("created_at", ["type": "integer"])], required: ["id", "prefix", "name", "created_at"])]))],
                      errors: ["501"]),
        ]),
        ("/api/auth/api-keys/{id}", ["delete": op(
            "revokeApiKey", "revoke one of the caller's API keys (another user's is answered as a missing one)", access: .user,
            tags: ["auth"], parameters: [pathParam("id")],
            responses: [("200", ok(object([("revoked", ["const": true])], required: ["revoked"])))], errors: ["501"])]),
    ]

    static func entityPaths(_ e: Entity) -> [(String, JSONValue)] {
        let n = e.name
        let base = "/api/entities/\(n)"
        let tags = [n]
        let rows: JSONValue = ["type": "array", "items": ref(n)]
        var out: [(String, JSONValue)] = [
            (base, [
                "get": op("list\(n)", "rows the caller may read, by id", access: .anyone, tags: tags,
                          parameters: [query("limit", count, "at most this many rows"), query("offset", count, "skip this many rows")],
                          responses: [("200", ok(object([("data", rows), ("count", count), ("offset", count),
                                                         ("limit", ["type": ["integer", "null"]])],
                                                        required: ["data", "count", "offset", "limit"])))]),
                "post": op("insert\(n)", "insert a row", access: .anyone, tags: tags, body: body(ref("\(n)Insert")),
                           responses: [("201", ok(object([("id", string)], required: ["id"]), "created"))], errors: ["409"]),
            ]),
            ("\(base)/cursor", ["get": op("page\(n)", "keyset pages of readable rows", access: .anyone, tags: tags,
                                          parameters: [query("after", string, "the next_cursor of the previous page"),
                                                       query("limit", count, "rows per page (1 to 100, default 20)")],
                                          responses: [("200", ok(object([("data", rows), ("next_cursor", ["type": ["string", "null"]]),
                                                                         ("has_more", boolean)], required: ["data", "next_cursor", "has_more"])))])]),
            ("\(base)/{id}", [
                "parameters": [pathParam("id")],
                "get": op("get\(n)", "one row (404 when absent or unreadable)", access: .anyone, tags: tags, responses: [("200", ok(ref(n)))]),
                "patch": op("update\(n)", "change some fields", access: .anyone, tags: tags, body: body(ref("\(n)Patch")),
                            responses: [("200", ok(object([("updated", ["const": true])], required: ["updated"])))], errors: ["409"]),
                "delete": op("delete\(n)", "delete a row", access: .anyone, tags: tags,
                             responses: [("200", ok(object([("deleted", ["const": true])], required: ["deleted"])))]),
            ]),
            ("/api/query/\(n)", ["post": op("query\(n)", "rows matching a filter", access: .anyone, tags: tags,
                                            body: body(nullable(ref("\(n)Filter")), required: false), responses: [("200", ok(rows))])]),
            ("/api/aggregate/\(n)", ["post": op("aggregate\(n)", "count, sum, avg, min, max, countDistinct, groupBy", access: .anyone,
                                                tags: tags, body: body(aggregateSchema(e)),
                                                responses: [("200", ok(object([("rows", ["type": "array", "items": anyObject])], required: ["rows"])))])]),
            ("/api/lookup/\(n)/{field}/{value}", ["get": op("lookup\(n)", "the first readable row whose field has the value", access: .anyone,
                                                            tags: tags,
                                                            parameters: [pathParam("field", ["type": "string", "enum": .array(e.fields.map { .string($0.name) })]),
                                                                         pathParam("value")],
                                                            responses: [("200", ok(ref(n)))])]),
        ]
        if let search = e.search, !search.text.isEmpty {
            out.append(("/api/search/\(n)", ["post": op("search\(n)", "full-text search with facets", access: .anyone, tags: tags,
                                                         body: body(searchSchema(e, search), required: false),
                                                         responses: [("200", ok(object([("hits", rows), ("facetCounts", anyObject), ("total", count),
                                                                                        ("tookMs", count)], required: ["hits", "facetCounts", "total", "tookMs"])))])]))
        }
        return out
    }

    /// Some measure or grouping (400 when all are empty); sum/avg over numbers, min/max over all but
    /// booleans, time buckets over datetime fields (what `DataService.aggregate` accepts).
    static func aggregateSchema(_ e: Entity) -> JSONValue {
        let names: ([String]) -> JSONValue = { .array($0.map { .string($0) }) }
        let all = ["id"] + e.fields.map(\.name)
        let numeric = e.fields.filter { $0.type == .int || $0.type == .float }.map(\.name)
        let ordered = ["id"] + e.fields.filter { $0.type != .bool }.map(\.name)
        let dates = e.fields.filter { $0.type == .datetime }.map(\.name)
        let list: ([String]) -> JSONValue = { ["type": "array", "items": ["enum": names($0)]] }
        var groupBy: [JSONValue] = [["enum": names(all)]]
        if !dates.isEmpty {
            groupBy.append(object([("field", ["enum": names(dates)]), ("bucket", ["enum": ["hour", "day", "week", "month", "year"]])],
                                  required: ["field", "bucket"], closed: true))
        }
        var props: [(String, JSONValue)] = [("count", ["anyOf": [["const": "*"], ["enum": names(all)]]])]
        if !numeric.isEmpty { props += [("sum", list(numeric)), ("avg", list(numeric))] }
        props += [("min", list(ordered)), ("max", list(ordered)), ("countDistinct", list(all)),
                  ("groupBy", ["type": "array", "items": ["anyOf": .array(groupBy)]])]
        let measures: [JSONValue] = props.map { ["required": [.string($0.0)]] }
        props.append(("where", ref("\(e.name)Where")))
        // A key whose value is null counts as absent.
        return object(props.map { ($0.0, nullable($0.1)) }, closed: true).setting("anyOf", .array(measures))
    }

    static func searchSchema(_ e: Entity, _ s: SearchConfig) -> JSONValue {
        var props: [(String, JSONValue)] = [
            ("query", string),
            ("filters", ref("\(e.name)Where")),
            ("facets", ["type": "array", "items": ["enum": .array(s.facets.map { .string($0) })]]),
            ("page", count), ("page_size", ["type": "integer", "minimum": 1]),
        ]
        let sortable: JSONValue = .array((["id"] + s.sortable).map { .string($0) })
        let direction: JSONValue = ["enum": ["asc", "desc", "ASC", "DESC"]]
        props.append(("sort", ["anyOf": [
            ["type": "array", "prefixItems": [["enum": sortable], direction], "minItems": 1, "maxItems": 2, "items": false],
            ["type": "object", "propertyNames": ["enum": sortable], "additionalProperties": direction, "minProperties": 1, "maxProperties": 1],
        ]]))
        // A key whose value is null counts as absent.
        return object(props.map { ($0.0, nullable($0.1)) }, closed: true)
    }

    static func dataPaths(_ m: Manifest) -> [(String, JSONValue)] {
        let graph = m.entities.map { e in
            (e.name, object([("where", ["anyOf": [ref("\(e.name)Filter"), ["type": "null"]]]), ("limit", ["type": ["integer", "null"], "minimum": 0, "maximum": .int(Int64.max)]),
                             ("include", ["type": ["object", "null"]])]))
        }
        let graphReply = object(m.entities.map { ($0.name, ["type": "array", "items": ref($0.name)]) })
        // Link bodies name an entity that has relations and one of its relations' names.
        let linking = m.entities.filter { !$0.relations.isEmpty }
        let entityName: JSONValue = linking.isEmpty ? string : ["enum": .array(linking.map { .string($0.name) })]
        let relationName: JSONValue = linking.isEmpty ? string : ["enum": .array(linking.flatMap { $0.relations.map { .string($0.name) } })]
        let link: [(String, JSONValue)] = [("entity", entityName), ("id", string), ("relation", relationName)]
        return [
            ("/api/query", ["post": op("graphQuery", "rows of several entities with include of relations", access: .anyone, tags: ["data"],
                                       body: body(object(graph, closed: true)), responses: [("200", ok(graphReply))])]),
            ("/api/link", ["post": op("link", "set a relation's foreign key", access: .anyone, tags: ["data"],
                                      body: body(object(link + [("target_id", string)], required: ["entity", "id", "relation", "target_id"])),
                                      responses: [("200", ok(object([("linked", ["const": true])], required: ["linked"])))])]),
            ("/api/unlink", ["post": op("unlink", "clear a relation's foreign key", access: .anyone, tags: ["data"],
                                        body: body(object(link, required: ["entity", "id", "relation"])),
                                        responses: [("200", ok(object([("unlinked", ["const": true])], required: ["unlinked"])))])]),
            ("/api/batch", ["post": op("batch", "independent operations", access: .admin, tags: ["data"],
                                       body: body(object([("operations", ["type": "array", "items": ref("Operation")])], required: ["operations"])),
                                       responses: [("200", ok(object([("results", ["type": "array", "items": anyObject]), ("succeeded", count),
                                                                      ("failed", count)], required: ["results", "succeeded", "failed"])))])]),
            ("/api/transact", ["post": op("transact", "all-or-nothing operations (400 with committed false when one fails)", access: .admin,
                                          tags: ["data"],
                                          body: body(["oneOf": [["type": "array", "items": ref("Operation")],
                                                                object([("operations", ["type": "array", "items": ref("Operation")])],
                                                                       required: ["operations"])]]),
                                          responses: [("200", ok(transactReply)),
                                                      ("400", ok(["oneOf": [ref("Error"), transactReply]], "bad input, or an operation failed and nothing was committed"))])]),
        ]
    }

    static let transactReply = object([("committed", boolean), ("results", ["type": "array", "items": anyObject])],
                                      required: ["committed", "results"])

    /// A change of a push. Its shape is not checked as a whole: a change the host cannot
    /// apply (bad kind, unknown entity, wrong value) is reported in `errors` and the others
    /// still apply, as in Pylon, so the schema only describes.
    static let pushChange: JSONValue = [
        "description": "{entity, kind: insert|update|delete, row_id, op_id, data}; a change that cannot be applied is reported in errors",
    ]

    static let syncPaths: [(String, JSONValue)] = [
        ("/api/sync/pull", ["get": op("pull", "the durable change log after a cursor", access: .anyone, tags: ["sync"],
                                      parameters: [query("since", count, "the last seq seen (0: from the start)"),
                                                   query("limit", count, "at most this many changes (default 100, max 1000)"),
                                                   query("epoch", string, "the epoch of the cursor")],
                                      responses: [("200", ok(object([("changes", ["type": "array", "items": ref("ChangeEvent")]),
                                                                     ("cursor", object([("last_seq", count), ("epoch", string)], required: ["last_seq", "epoch"])),
                                                                     ("has_more", boolean)], required: ["changes", "cursor", "has_more"])))],
                                      errors: ["410"])]),
        ("/api/sync/push", ["post": op("push", "client changes, policy-checked, exactly once per op_id", access: .anyone, tags: ["sync"],
                                       body: body(object([("changes", ["type": "array", "items": pushChange]),
                                                          ("client_id", ["type": ["string", "null"]])], required: ["changes"])),
                                       responses: [("200", ok(object([("applied", count), ("deduped", count),
                                                                      ("errors", ["type": "array", "items": string]),
                                                                      ("cursor", object([("last_seq", count)])), ("id_map", anyObject),
                                                                      ("results", ["type": "array"])],
                                                                     required: ["applied", "deduped", "errors", "cursor", "id_map", "results"])))])]),
        ("/api/sync/events", ["get": op("events", "server-sent change events (id: <seq>); resume with Last-Event-ID or ?since=",
                                        access: .user, tags: ["sync"],
                                        parameters: [query("since", count, "resume after this seq"), query("epoch", string, "the epoch of the cursor"),
                                                     query("token", string, "a session token, for clients that cannot send headers")],
                                        responses: [("200", .object([("description", "an event stream"),
                                                                     ("content", ["text/event-stream": ["schema": string]])]))])]),
        ("/api/sync/ws", ["get": op("websocket", "WebSocket upgrade: change events and presence/topic relays (?since=N[&epoch=E])",
                                    access: .user, tags: ["sync"],
                                    parameters: [query("since", count, "resume after this seq"), query("epoch", string, "the epoch of the cursor")],
                                    responses: [("101", ["description": "switching to the WebSocket protocol"])])]),
    ]

    /// Export/import, one user's data, the dev reset, manifest actions and the studio's
    /// read-only listings (AdminDataRoutes).
    static func adminDataPaths(_ s: Surface) -> [(String, JSONValue)] {
        let entity = pathParam("entity", ["enum": .array(s.manifest.entities.map { .string($0.name) })])
        var out: [(String, JSONValue)] = [
            ("/api/export", ["get": op("export", "every entity's rows", access: .admin, tags: ["admin"], responses: [("200", ok(anyObject))])]),
            ("/api/export/{entity}", ["get": op("exportEntity", "one entity's rows", access: .admin, tags: ["admin"],
                                                parameters: [entity], responses: [("200", ok(anyObject))])]),
            ("/api/import", ["post": op("import", "rows in the shape /api/export returns", access: .admin, tags: ["admin"],
                                        body: body(object([("entities", ["type": "object", "additionalProperties": ["type": "array"]])],
                                                          required: ["entities"])),
                                        responses: [("200", ok(object([("imported", count), ("failed", count), ("by_entity", ["type": "array"])],
                                                                      required: ["imported", "failed", "by_entity"])))])]),
            ("/api/admin/users/{id}/export", ["post": op("exportUser", "one user's rows (GDPR)", access: .admin, tags: ["admin"],
                                                         parameters: [pathParam("id")], responses: [("200", ok(anyObject))])]),
            ("/api/admin/users/{id}/purge", ["delete": op("purgeUser", "delete one user's rows and sessions (GDPR)", access: .admin,
                                                          tags: ["admin"], parameters: [pathParam("id")], responses: [("200", ok(anyObject))])]),
            ("/api/actions/{name}", ["post": op("action", "a manifest action", access: .anyone, tags: ["actions"], parameters: [pathParam("name")],
                                                body: body(anyValue, required: false), responses: [("200", ok(anyValue))],
                                                errors: ["501", "503", "504"])]),
        ]
        if s.dev {
            out.append(("/api/__test__/reset", ["post": op("testReset", "delete every row (--dev, from this machine only)", access: .anyone,
                                                           tags: ["admin"], responses: [("200", ok(anyObject))])]))
        }
        for listing in ["auth/sessions", "auth/accounts", "auth/oauth_state", "auth/magic_codes",
                        "ops/jobs", "ops/workflows", "ops/scheduler", "ops/search_indexes"] {
            out.append(("/api/admin/\(listing)", ["get": op("admin_" + listing.replacingOccurrences(of: "/", with: "_"),
                                                            "the studio's read-only listing", access: .admin, tags: ["admin"],
                                                            responses: [("200", ok(anyValue))])]))
        }
        return out
    }

    static let functionPaths: [(String, JSONValue)] = [
        ("/api/fn", ["get": op("listFunctions", "the server functions", access: .admin, tags: ["functions"], responses: [("200", ok(anyValue))])]),
        ("/api/fn/traces", ["get": op("functionTraces", "recent calls", access: .admin, tags: ["functions"],
                                      parameters: [query("limit", count, "at most this many")], responses: [("200", ok(anyValue))])]),
        ("/api/fn/{name}", ["post": op("callFunction", "call a query, mutation or action (Accept: text/event-stream streams it)",
                                       access: .anyone, tags: ["functions"], parameters: [pathParam("name")], body: body(anyValue, required: false),
                                       responses: [("200", ok(anyValue))], errors: ["501", "502", "503", "504"])]),
        ("/api/webhooks/{name}", .object(["get", "post", "put", "patch", "delete"].map { method in
            (method, op("webhook_\(method)", "run the action NAME with {rawBody}", access: .anyone, tags: ["functions"],
                        parameters: [pathParam("name")], responses: [("200", ok(anyValue))], errors: ["501", "502", "503", "504"]))
        })),
    ]
}
