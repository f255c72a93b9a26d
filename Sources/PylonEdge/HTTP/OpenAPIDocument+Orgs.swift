import PylonJSON

/// Organisations (`OrgRoutes`): Pylon's `/api/auth/orgs…` and `/api/auth/invites/{token}/accept`.
extension OpenAPIDocument {
    static func orgPaths(dev: Bool) -> [(String, JSONValue)] {
        let tags = ["orgs"]
        let role: JSONValue = ["type": "string", "enum": ["owner", "admin", "member"]]
        let org = object([("id", string), ("name", string), ("created_at", count), ("role", role)], required: ["id", "name", "created_at", "role"])
        let member = object([("user_id", string), ("role", role), ("joined_at", count)], required: ["user_id", "role", "joined_at"])
        let invite = object([("id", string), ("email", string), ("role", role), ("token_prefix", string), ("invited_by", string),
                             ("created_at", count), ("expires_at", count)], required: ["id", "email", "role", "expires_at"])
        // --dev echoes the link and token (as Pylon), for local testing without mail.
        let sent = object([("id", string), ("email", string), ("role", role), ("created_at", count), ("expires_at", count)]
                          + (dev ? [("accept_url", string), ("token", string)] : []), required: ["id", "email", "role", "expires_at"])
        let name = body(object([("name", ["type": "string", "minLength": 1, "maxLength": 200])], required: ["name"]))
        let id = pathParam("id")
        let setRole = { (operation: String) in op(operation, "give a member a role (owners and admins; only an owner makes or changes an owner; the last owner stays one: 400 LAST_OWNER; session only)",
                         access: .user, tags: tags, parameters: [id, pathParam("user")], body: body(object([("role", role)], required: ["role"])),
                         responses: [("200", ok(object([("updated", ["const": true]), ("user_id", string), ("role", role)], required: ["updated"])))]) }
        return [
            ("/api/auth/orgs", [
                "post": op("createOrg", "create an organisation; the caller becomes its owner (session only; at most 100 per user: 400 ORG_LIMIT)",
                           access: .user, tags: tags, body: name, responses: [("200", ok(org))]),
                "get": op("listOrgs", "the caller's organisations with their role in each", access: .user, tags: tags,
                          responses: [("200", ok(["type": "array", "items": org]))]),
            ]),
            ("/api/auth/orgs/{id}", [
                "get": op("getOrg", "an organisation of the caller's (not a member: 404 ORG_NOT_FOUND, as for one that does not exist)",
                          access: .user, tags: tags, parameters: [id], responses: [("200", ok(org))]),
                "patch": op("renameOrg", "rename it (owners and admins; session only)", access: .user, tags: tags, parameters: [id], body: name,
                            responses: [("200", ok(org))]),
                "delete": op("deleteOrg", "delete it with its members and invites (an owner; session only); sessions acting in it act in none",
                             access: .user, tags: tags, parameters: [id],
                             responses: [("200", ok(object([("deleted", ["const": true])], required: ["deleted"])))]),
            ]),
            ("/api/auth/orgs/{id}/members", ["get": op(
                "listOrgMembers", "its members, oldest first (any member)", access: .user, tags: tags, parameters: [id],
                responses: [("200", ok(["type": "array", "items": member]))])]),
            ("/api/auth/orgs/{id}/members/{user}", [
                "put": setRole("setOrgMemberRole"),
                "patch": setRole("patchOrgMemberRole"),
                "delete": op("removeOrgMember", "remove a member (owners and admins; an admin not an owner), or leave (your own id; not the last owner: 400 LAST_OWNER); session only",
                             access: .user, tags: tags, parameters: [id, pathParam("user")],
                             responses: [("200", ok(object([("removed", ["const": true])], required: ["removed"])))]),
            ]),
            ("/api/auth/orgs/{id}/invites", [
                "post": op("inviteToOrg", "email an invite (ORG_INVITE template; 7 days, single use; owners and admins, only an owner invites an owner; SEND auth bucket per address and invited email; session only)",
                           access: .user, tags: tags, parameters: [id],
                           body: body(object([("email", string), ("role", role)], required: ["email"])),
                           responses: [("200", ok(sent))], errors: ["409", "501", "503"]),
                "get": op("listOrgInvites", "its pending invites, newest first (owners and admins)", access: .user, tags: tags, parameters: [id],
                          responses: [("200", ok(["type": "array", "items": invite]))]),
            ]),
            ("/api/auth/orgs/{id}/invites/{invite}", ["delete": op(
                "revokeOrgInvite", "revoke a pending invite (owners and admins; session only)", access: .user, tags: tags,
                parameters: [id, pathParam("invite")], responses: [("200", ok(object([("revoked", ["const": true])], required: ["revoked"])))])]),
            ("/api/auth/invites/{token}/accept", ["post": op(
                "acceptOrgInvite", "join with the invited role as the user with the invited address (session only; WRONG_EMAIL 403, INVITE_EXPIRED 410, ALREADY_MEMBER 409, INVITE_NOT_FOUND 404)",
                access: .user, tags: tags, parameters: [pathParam("token")],
                responses: [("200", ok(object([("org_id", string), ("role", role)], required: ["org_id", "role"])))], errors: ["409", "410"])]),
        ]
    }
}
