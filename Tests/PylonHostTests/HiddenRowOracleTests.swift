import Foundation
import Testing

/// A row the caller may not read looks exactly like a missing one on every write path that
/// names it by id (README "Policies"): the policy decision on the stored row comes before
/// the patch's values are checked, so a bad patch cannot tell a hidden row from an absent
/// id (400 INVALID_DATA against 404 NOT_FOUND was an existence oracle). A row the caller
/// may update still gets its validation errors.
@Suite("Hidden rows answer like missing ones on PATCH, push update and unlink (black-box, real pylon-host)")
struct HiddenRowOracleTests {
    @Test("bob's bad patches on alice's note answer exactly as on an absent id; on his own note they are 400 INVALID_DATA", arguments: TestStore.all)
    func hiddenLikeAbsent(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: PolicyMatrixTests.manifest, dev: false, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let hidden = try await host.create("Note", #"{"ownerId":"alice","title":"private"}"#, token: alice)
        let hiddenComment = try await host.create("Comment", #"{"noteId":"\#(hidden)","ownerId":"alice","body":"c"}"#, token: alice)
        let absent = String(hidden.dropLast(8)) + "ffffffff"
        let own = try await host.create("Note", #"{"ownerId":"bob","title":"mine"}"#, token: bob)

        /// Every probe of `id` (a note) and `comment` (a comment on a note), answered as
        /// `(status, body)` with the ids written as placeholders so the answers compare.
        func answers(note id: String, comment: String) async throws -> [String] {
            var out: [String] = []
            for patch in [#"{"title":null}"#, #"{"title":5}"#] {
                let r = try await host.request("PATCH", "/api/entities/Note/\(id)", json: patch, token: bob)
                out.append("PATCH \(patch): \(r.status) \(r.body)")
            }
            let push = #"{"changes":[{"entity":"Note","kind":"update","row_id":"\#(id)","data":{"title":null}}]}"#
            let p = try await host.request("POST", "/api/sync/push", json: push, token: bob)
            out.append("push: \(p.status) \(p.json["results"][0]["code"].string ?? "") \(p.json["results"][0]["message"].string ?? "")")
            let u = try await host.request("POST", "/api/unlink", json: #"{"entity":"Comment","id":"\#(comment)","relation":"note"}"#, token: bob)
            out.append("unlink: \(u.status) \(u.body)")
            return out.map { $0.replacingOccurrences(of: id, with: "<id>").replacingOccurrences(of: comment, with: "<comment>") }
        }
        let onHidden = try await answers(note: hidden, comment: hiddenComment)
        let onAbsent = try await answers(note: absent, comment: absent)
        #expect(onHidden == onAbsent, "hidden:\n\(onHidden.joined(separator: "\n"))\nabsent:\n\(onAbsent.joined(separator: "\n"))")
        #expect(onAbsent.allSatisfy { $0.contains("404") || $0.contains("NOT_FOUND") }, "\(onAbsent)")

        // The happy twin: bob's own note still gets its validation errors.
        for patch in [#"{"title":null}"#, #"{"title":5}"#] {
            let r = try await host.request("PATCH", "/api/entities/Note/\(own)", json: patch, token: bob)
            #expect(r.status == 400 && r.json.errorCode == "INVALID_DATA", "\(patch): \(r.body)")
        }
        // Nothing changed alice's rows.
        let note = try await host.request("GET", "/api/entities/Note/\(hidden)", token: alice)
        #expect(note.json["title"].string == "private")
        let comment = try await host.request("GET", "/api/entities/Comment/\(hiddenComment)", token: alice)
        #expect(comment.json["noteId"].string == hidden)
    }
}
