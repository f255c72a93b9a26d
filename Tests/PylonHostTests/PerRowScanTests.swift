import Foundation
import Testing

/// A read rule SQL cannot evaluate (`data.a == data.b`: one field against another) is
/// checked row by row as the store sends the rows: only the page is held, and the read
/// stops once it is full. Before, every matching row was held first, so rows nobody may
/// read, which anyone the insert rule admits can add, made every list of the entity cost
/// the whole table in memory (outside probe `dataplane` F4: 16 lists of `limit=1` grew the
/// host from 333 to 869 MiB). SQLite only: PostgreSQL's client library receives a whole
/// result before the host sees a row (README).
@Suite("Reads checked row by row hold only their page (black-box, real pylon-host)", .serialized)
struct PerRowScanTests {
    static let manifest = """
    {"manifest_version": 1, "name": "per-row-scan", "version": "1",
     "entities": [{"name": "Pair", "fields": [
        {"name": "a", "type": "string"}, {"name": "b", "type": "string"}, {"name": "val", "type": "string", "optional": true}]}],
     "routes": [], "queries": [], "actions": [],
     "policies": [{"name": "pairs", "entity": "Pair", "allowRead": "data.a == data.b", "allowInsert": "auth.userId != null"}]}
    """

    @Test("A list of limit=1 over 40 MB of rows the caller may not read: the right rows, and host RSS grows by less than twice the table while 8 such lists run (it grew by about 5 times it)")
    func pageOnly() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.kill9() }
        let filler = String(repeating: "x", count: 2000)
        let hidden = Array(repeating: #"{"op":"insert","entity":"Pair","data":{"a":"1","b":"2","val":"\#(filler)"}}"#, count: 500)
            .joined(separator: ",")
        for _ in 0..<40 {
            let r = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(hidden)]}"#, token: HostProcess.adminToken)
            #expect(r.status == 200, "\(r.body.prefix(200))")
        }
        for v in ["v1", "v2", "v3"] {
            _ = try await host.create("Pair", #"{"a":"\#(v)","b":"\#(v)"}"#)
        }
        let user = try await host.mintSession("reader")
        let first = try await host.request("GET", "/api/entities/Pair?limit=1", token: user)
        #expect(first.status == 200 && first.json["data"].items.count == 1, "\(first.body.prefix(300))")
        let page = try await host.request("POST", "/api/query/Pair", json: #"{"$limit": 2, "$offset": 1}"#, token: user)
        #expect(page.json.items.compactMap { $0["a"].string }.count == 2, "$offset and $limit count readable rows: \(page.body.prefix(300))")
        let all = try await host.request("POST", "/api/query/Pair", json: "{}", token: user)
        #expect(Set(all.json.items.compactMap { $0["a"].string }) == ["v1", "v2", "v3"], "\(all.body.prefix(300))")

        let pid = try #require(host.pid)
        let before = try #require(residentBytes(pid: pid))
        let sampler = Task.detached { () -> Int in
            var peak = 0
            while !Task.isCancelled {
                peak = max(peak, residentBytes(pid: pid) ?? 0)
                try? await Task.sleep(for: .milliseconds(5))
            }
            return peak
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    // The hidden rows come first (ids follow insertion): the scan reads them all.
                    let r = try await host.request("GET", "/api/entities/Pair?limit=1", token: user)
                    #expect(r.status == 200 && r.json["data"].items.count == 1, "\(r.body.prefix(200))")
                }
            }
            try await group.waitForAll()
        }
        sampler.cancel()
        let peak = max(await sampler.value, residentBytes(pid: pid) ?? 0)
        // Held rows would cost about 2.5 times the table per running list (raw values, then
        // decoded), 4 at a time (the readers); what may grow now is SQLite's page cache, at
        // most 16 MB for each of the 4 reader connections, whatever the table's size.
        let table = 20_000 * 2000
        #expect(peak - before < 2 * table, "host RSS grew from \(before >> 20) MiB to \(peak >> 20) MiB over a \(table >> 20) MB table of hidden rows")
    }
}
