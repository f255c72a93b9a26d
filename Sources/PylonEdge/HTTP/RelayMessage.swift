import PylonCore
import PylonJSON

/// What a client's text message on a WebSocket becomes. Pylon relays any `presence` or
/// `topic` object to every WebSocket client with `from` stamped (pylon-core.md "Client →
/// server text frames"); anything else is ignored. A relay must not pass for what only the
/// host sends, so two presence shapes are refused (`RELAY_NOT_ALLOWED`, the connection stays
/// open): one naming a `room` (room events come from `/api/rooms/*`, which checks
/// membership and sends them to members only: clients hand a presence frame with a `room`
/// to that room's listeners) and the host's `event: "disconnect"` notice. Identity is the
/// host's: `from` and `user_id` are set to the sender, whatever the client wrote.
enum RelayMessage: Equatable {
    case relay(String)
    case refuse(String)
    case ignore

    static func read(_ text: String, from sender: JSONValue) -> RelayMessage {
        guard let v = try? JSONParser.parse(text), let type = v["type"]?.stringValue,
              type == "presence" || type == "topic" else { return .ignore }
        if type == "presence", let refusal = refusal(v) { return .refuse(refusal) }
        return .relay(JSONWriter.string(v.setting("from", sender).setting("user_id", sender)))
    }

    /// The error frame for a presence message that imitates the host's, or nil.
    private static func refusal(_ v: JSONValue) -> String? {
        let why: String
        if v["room"] != nil {
            why = "a presence message sent on the WebSocket may not name a room: room events reach members only through POST /api/rooms/presence and /api/rooms/broadcast"
        } else if v["event"]?.stringValue == "disconnect" {
            why = "a presence message with \"event\":\"disconnect\" is the host's notice; clients may not send one"
        } else {
            return nil
        }
        let e = HostError(status: 403, code: "RELAY_NOT_ALLOWED", message: why + "; this one was not relayed")
        return JSONWriter.string(e.body.setting("type", "error"))
    }
}
