import Foundation
import Testing

// Request helpers shared by `RealtimeTests` and `PolicyMatrixTests`.

extension HostProcess {
    /// Mints a session for `userID` with the admin token; returns the bearer token.
    func mintSession(_ userID: String) async throws -> String {
        let r = try await request("POST", "/api/auth/session", json: #"{"user_id":\#(TestJSON.quote(userID))}"#,
                                  token: Self.adminToken)
        guard r.status == 201, let token = r.json["token"].string else {
            throw RealtimeTestError("POST /api/auth/session {user_id: \(userID)} → \(r.status) \(r.body)")
        }
        return token
    }

    /// A guest's token (`POST /api/auth/guest`: anyone can have one).
    func guestToken() async throws -> String {
        let r = try await request("POST", "/api/auth/guest")
        guard let token = r.json["token"].string else { throw RealtimeTestError("POST /api/auth/guest → \(r.status) \(r.body)") }
        return token
    }

    /// `POST /api/entities/E` that must answer 201; returns the new id.
    func create(_ entity: String, _ json: String, token: String? = HostProcess.adminToken) async throws -> String {
        let r = try await request("POST", "/api/entities/\(entity)", json: json, token: token)
        guard r.status == 201, let id = r.json["id"].string else {
            throw RealtimeTestError("POST /api/entities/\(entity) \(json.prefix(200)) → \(r.status) \(r.body.prefix(500))")
        }
        return id
    }

    /// `count` rows of `Item` inserted by `writers` concurrent sequential writers; returns
    /// the ids (writer by writer, each in its own commit order).
    func createItems(_ count: Int, writers: Int = 4, prefix: String, padding: Int = 0,
                     token: String = HostProcess.adminToken) async throws -> [String] {
        let pad = String(repeating: "x", count: padding)
        return try await withThrowingTaskGroup(of: [String].self) { group in
            for w in 0..<writers {
                group.addTask {
                    var ids: [String] = []
                    for i in stride(from: w, to: count, by: writers) {
                        ids.append(try await self.create("Item", #"{"title":"\#(prefix)-\#(i)\#(pad)","n":\#(i)}"#, token: token))
                    }
                    return ids
                }
            }
            var all: [String] = []
            for try await ids in group { all += ids }
            return all
        }
    }

    /// The database epoch and the newest seq of the change log (pulled as admin).
    func logHead() async throws -> (epoch: String, newest: Int) {
        var cursor = 0
        var epoch = ""
        while true {
            let r = try await request("GET", "/api/sync/pull?since=\(cursor)&limit=1000", token: Self.adminToken)
            guard r.status == 200, let last = r.json["cursor"]["last_seq"].int, let e = r.json["cursor"]["epoch"].string else {
                throw RealtimeTestError("GET /api/sync/pull?since=\(cursor) → \(r.status) \(r.body.prefix(500))")
            }
            cursor = last
            epoch = e
            if r.json["has_more"].bool != true { return (epoch, cursor) }
        }
    }

    /// Every change after `since` visible to `token` (pages of 1000).
    func pullAll(since: Int = 0, token: String?) async throws -> [Any?] {
        var cursor = since
        var out: [Any?] = []
        while true {
            let r = try await request("GET", "/api/sync/pull?since=\(cursor)&limit=1000", token: token)
            guard r.status == 200, let last = r.json["cursor"]["last_seq"].int else {
                throw RealtimeTestError("GET /api/sync/pull?since=\(cursor) → \(r.status) \(r.body.prefix(500))")
            }
            out += r.json["changes"].items
            cursor = last
            if r.json["has_more"].bool != true { return out }
        }
    }

    /// A counter of the host's `/metrics` (read with the admin token).
    func metricCounter(_ name: String) async throws -> Int? {
        let r = try await request("GET", "/metrics", token: Self.adminToken)
        return r.json["counters"][name].int
    }
}

/// `row_id`s of change events, in order.
func rowIDs(_ events: [Any?]) -> [String] { events.compactMap { $0["row_id"].string } }
/// `seq`s of change events, in order.
func seqs(_ events: [Any?]) -> [Int] { events.compactMap { $0["seq"].int } }

/// Applies change events to a replica keyed by row id, the way Pylon clients do: insert
/// and update store the event's row, delete removes it.
func applyEvents(_ events: [Any?], to replica: inout [String: [String: Any]]) {
    for e in events {
        guard let id = e["row_id"].string else { continue }
        switch e["kind"].string {
        case "insert"?, "update"?:
            var row = replica[id] ?? [:]
            for (k, v) in e["data"].object ?? [:] { row[k] = v }
            row["id"] = id
            replica[id] = row
        case "delete"?:
            replica[id] = nil
        default: break
        }
    }
}
