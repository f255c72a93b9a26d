import PylonJSON

/// Sign-in by email (`MagicCodeRoutes`, password reset in `PasswordRoutes`), described when
/// a plugin serves `pylon.auth.code/1`.
extension OpenAPIDocument {
    static func authCodePaths(dev: Bool) -> [(String, JSONValue)] {
        let tags = ["auth"]
        let email = object([("email", string)], required: ["email"])
        let code = object([("email", string), ("code", string)], required: ["email", "code"])
        // --dev echoes the secret (as Pylon), for local testing without mail.
        let sentCode = object([("sent", ["const": true]), ("email", string)] + (dev ? [("dev_code", string)] : []), required: ["sent", "email"])
        let sentLink = object([("sent", ["const": true])] + (dev ? [("dev_token", string), ("dev_url", string)] : []), required: ["sent"])
        let token = object([("token", string)], required: ["token"])
        return [
            ("/api/auth/magic/send", ["post": op(
                "magicSend", "email a 6-digit sign-in code (10 min, 5 attempts; SEND auth bucket per address and email; 429 within 60 s of the last code)",
                access: .anyone, tags: tags, body: body(email), responses: [("200", ok(sentCode))], errors: ["503"])]),
            ("/api/auth/magic/verify", ["post": op(
                "magicVerify", "sign in with the emailed code; creates the user on first sign-in and marks the email verified (VERIFY bucket; too many wrong codes: 429)",
                access: .anyone, tags: tags, body: body(code), responses: [("200", ok(tokenReply))], errors: ["401", "501"])]),
            ("/api/auth/email/send-verification", ["post": op(
                "emailSendVerification", "email a code to the caller's address (session only)", access: .user, tags: tags,
                responses: [("200", ok(sentCode))], errors: ["501", "503"])]),
            ("/api/auth/email/verify", ["post": op(
                "emailVerify", "verify the caller's address with the emailed code (session only)", access: .user, tags: tags,
                body: body(object([("code", string)], required: ["code"])),
                responses: [("200", ok(object([("verified", ["const": true]), ("emailVerified", anyValue)], required: ["verified", "emailVerified"])))],
                errors: ["409", "501"])]),
            ("/api/auth/magic-link/send", ["post": op(
                "magicLinkSend", "email a single-use sign-in link (15 min; SEND auth bucket)", access: .anyone, tags: tags,
                body: body(email), responses: [("200", ok(sentLink))], errors: ["503"])]),
            ("/api/auth/magic-link/verify", [
                "get": op("magicLinkOpen", "open an emailed link: sets the session cookie and redirects to PYLON_DASHBOARD_URL",
                          access: .anyone, tags: tags,
                          parameters: [query("token", string, "the token from the link")],
                          responses: [("302", ["description": "signed in: the session cookie is set"])], errors: ["401", "501"]),
                "post": op("magicLinkVerify", "sign in with a link's token", access: .anyone, tags: tags, body: body(token),
                           responses: [("200", ok(tokenReply))], errors: ["401", "501"]),
            ]),
            ("/api/auth/email/change/request", ["post": op(
                "emailChangeRequest", "email a link (24 h, single use) to a new address for the caller; the email changes only when it is confirmed (session only; SEND bucket per address and user; 409 EMAIL_IN_USE)",
                access: .user, tags: tags, body: body(object([("newEmail", string)], required: ["newEmail"])),
                responses: [("200", ok(object([("sent", ["const": true]), ("email", string)] + (dev ? [("dev_token", string), ("dev_url", string)] : []),
                                              required: ["sent", "email"])))], errors: ["409", "501", "503"])]),
            ("/api/auth/email/change/confirm", [
                "get": op("emailChangeOpen", "open an emailed change link: the user's email becomes the new (verified) address; redirects to PYLON_DASHBOARD_URL",
                          access: .anyone, tags: tags, parameters: [query("token", string, "the token from the link")],
                          responses: [("302", ["description": "changed"])], errors: ["401", "409", "501"]),
                "post": op("emailChangeConfirm", "confirm an email change with the link's token", access: .anyone, tags: tags, body: body(token),
                           responses: [("200", ok(object([("changed", ["const": true]), ("user_id", string), ("email", string)], required: ["changed", "email"])))],
                           errors: ["401", "409", "501"]),
            ]),
            ("/api/auth/password/reset/request", ["post": op(
                "passwordResetRequest", "email a password-reset link (30 min) when the address has an account; the same answer either way (SEND bucket)",
                access: .anyone, tags: tags, body: body(email), responses: [("200", ok(sentLink))], errors: ["501"])]),
            ("/api/auth/password/reset/complete", ["post": op(
                "passwordResetComplete", "set a new password with a reset link's token; ends every session of the user and signs in",
                access: .anyone, tags: tags,
                body: body(object([("token", string), ("newPassword", string)], required: ["token", "newPassword"])),
                responses: [("200", ok(object([("reset", ["const": true]), ("token", string), ("user_id", string),
                                               ("expires_at", ["type": "integer"])], required: ["reset", "token", "user_id"])))],
                errors: ["401", "501", "503"])]),
        ]
    }
}
