/// The app the client's tests run against: users, todos (title required), a `Locked`
/// entity no one may insert into (a policy rejection), and two functions.
enum TestManifest {
    static let json = #"""
    {
      "manifest_version": 1, "name": "swiftclient", "version": "0.1.0",
      "entities": [
        {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "displayName", "type": "string", "optional": true, "unique": false}], "indexes": []},
        {"name": "Todo", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false},
          {"name": "done", "type": "bool", "optional": false, "unique": false},
          {"name": "priority", "type": "int", "optional": true, "unique": false}], "indexes": []},
        {"name": "Locked", "fields": [
          {"name": "note", "type": "string", "optional": false, "unique": false}], "indexes": []}
      ],
      "routes": [], "queries": [], "actions": [],
      "policies": [{"name": "locked", "entity": "Locked", "allowRead": "true", "allowInsert": "false",
                    "allowUpdate": "false", "allowDelete": "false"}]
    }
    """#

    static let functions: [String: String] = [
        "functions/double.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { n: v.number() }, async handler(ctx, { n }) { return { doubled: n * 2 }; } });
        """,
        "functions/countdown.ts": """
        import { action, v } from "@pylon/functions";
        export default action({ args: { from: v.number(), fail: v.optional(v.boolean()) }, async handler(ctx, { from, fail }) {
          for (let i = from; i > 0; i--) ctx.stream.write(String(i));
          if (fail) ctx.error("COUNTDOWN_FAILED", "as asked");
          return { liftoff: true };
        } });
        """,
    ]
}
