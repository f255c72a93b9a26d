import PylonJSON

/// The OAuth / OpenID routes (`OAuthRoutes`), described when a plugin serves auth.oauth.
extension OpenAPIDocument {
    static let oauthPaths: [(String, JSONValue)] = {
        let tags = ["auth"]
        let provider = pathParam("provider")
        let redirect: JSONValue = ["description": "to the provider, or to the flow's callback / error callback (with oauth_error)",
                                   "headers": ["Location": ["schema": ["type": "string"]]]]
        let started = ok(object([("redirect", string), ("state", string)], required: ["redirect", "state"]))
        let signedIn = ok(object([("token", string), ("user_id", string), ("provider", string), ("expires_at", ["type": "integer"])],
                                 required: ["token", "user_id", "provider", "expires_at"]))
        let callbackBody = object([("state", ["type": "string", "minLength": 1]), ("code", ["type": "string", "minLength": 1]),
                                   ("email", string), ("name", string)], required: ["state"])
        return [
            ("/api/auth/providers", ["get": op("oauthProviders", "the configured sign-in providers", access: .anyone, tags: tags,
                                               responses: [("200", ok(["type": "array", "items": object([("provider", string), ("name", string), ("auth_url", string)])]))])]),
            ("/api/auth/login/{provider}", ["get": op(
                "oauthLogin", "begin a sign-in: 302 to the provider with redirect=1, else its URL and the state",
                access: .anyone, tags: tags,
                parameters: [provider, query("callback", string, "where the browser goes after sign-in: a path here or a trusted origin"),
                             query("error_callback", string, "where it goes on failure (default: callback)"), query("redirect", string, "1: answer 302")],
                responses: [("302", redirect), ("200", started)], errors: ["502"])]),
            ("/api/auth/callback/{provider}", .object([
                ("get", op("oauthCallback", "the provider sends the browser back here (code, state)", access: .anyone, tags: tags,
                           parameters: [provider, query("code", string, "the authorization code"), query("state", string, "the flow's state"),
                                        query("error", string, "the provider's refusal")],
                           responses: [("302", redirect)])),
                ("post", op("oauthCallbackPost", "finish a sign-in: JSON {state, code} answers a session; a form POST (response_mode=form_post) redirects",
                            access: .anyone, tags: tags, parameters: [provider], body: body(callbackBody),
                            responses: [("200", signedIn), ("302", redirect)], errors: ["409", "502"])),
            ])),
            ("/api/auth/oauth/refresh/{provider}", ["post": op(
                "oauthRefresh", "fresh provider tokens for the caller's linked account (a session only)", access: .user, tags: tags,
                parameters: [provider],
                responses: [("200", ok(object([("access_token", string), ("expires_at", ["type": ["integer", "null"]]),
                                               ("scope", ["type": ["string", "null"]]), ("provider", string)])))],
                errors: ["502"])]),
        ]
    }()
}
