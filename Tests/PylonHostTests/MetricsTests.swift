import Foundation
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// `GET /metrics` against the real host: the Prometheus text format (parsed by
/// prometheus_client, as a scraper would), Pylon's JSON shape otherwise, who may read it,
/// route templates as labels, and that hostile paths and names add no series.
@Suite("Metrics: /metrics in Prometheus text and JSON")
struct MetricsTests {
    static let manifest = """
    {"manifest_version": 1, "name": "metrics", "version": "1",
     "entities": [{"name": "Todo", "fields": [
        {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "policies": [{"name": "todos", "entity": "Todo", "allow": "true"}]}
    """
    /// What Prometheus 2.x/3.x sends when it scrapes.
    static let prometheusAccept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"

    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double?
    }

    /// `/metrics` as Prometheus text, parsed by `Tests/Fixtures/metrics/parse_prometheus.py`
    /// (prometheus_client's parser): family name → (type, samples).
    static func scrape(_ host: HostProcess, accept: String = "text/plain") async throws -> [String: (type: String, samples: [Sample])] {
        let r = try await host.rawRequest("GET", "/metrics", token: HostProcess.adminToken, headers: ["Accept": accept])
        #expect(r.status == 200, "\(r.body)")
        #expect(r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", "\(r.headers)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-metrics-\(UUID().uuidString).txt")
        try Data(r.body.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/metrics/parse_prometheus.py").path
        let run = try await TestCommand.run("/usr/bin/env", ["python3", script, file.path])
        guard run.status == 0 else {
            throw TestSetupError(description: "prometheus_client could not parse /metrics (\(run.stderr)); the text was:\n\(r.body)")
        }
        let parsed: Any? = try TestJSON.parse(run.stdout)
        var out: [String: (type: String, samples: [Sample])] = [:]
        for (name, family) in parsed["families"].object ?? [:] {
            let f: Any? = family
            out[name] = (f["type"].string ?? "", f["samples"].items.map(Self.sample))
        }
        return out
    }

    static func sample(_ s: Any?) -> Sample {
        let labels: [String: String] = (s["labels"].object ?? [:]).compactMapValues { $0 as? String }
        let value: Double? = s["value"].double ?? s["value"].int.map { Double($0) }
        return Sample(name: s["name"].string ?? "", labels: labels, value: value)
    }

    /// The value of the sample `name` whose labels include `labels` (0 when absent).
    static func value(_ families: [String: (type: String, samples: [Sample])], _ family: String, _ name: String,
                      _ labels: [String: String]) -> Double {
        families[family]?.samples.first { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }?.value ?? 0
    }

    @Test("Prometheus text: parses with prometheus_client; requests by route template and status class, latency histograms, commits, plugin calls")
    func prometheusText() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let created = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"a"}"#)
        #expect(created.status == 201, "\(created.body)")
        let id = try #require(created.json["id"].string)
        #expect(try await host.request("GET", "/api/entities/Todo/\(id)").status == 200)
        #expect(try await host.request("GET", "/api/entities/Todo?limit=1").status == 200)
        #expect(try await host.request("GET", "/no/such/path-\(id)").status == 404)

        for accept in ["text/plain", "application/openmetrics-text", Self.prometheusAccept] {
            let m = try await Self.scrape(host, accept: accept)
            // prometheus_client names a counter family without its `_total`.
            #expect(m["pylon_http_requests"]?.type == "counter", "\(m.keys.sorted())")
            let row = ["method": "GET", "route": "/api/entities/{entity}/{id}", "status": "2xx"]
            #expect(Self.value(m, "pylon_http_requests", "pylon_http_requests_total", row) >= 1, "\(m["pylon_http_requests"]?.samples ?? [])")
            #expect(Self.value(m, "pylon_http_requests", "pylon_http_requests_total",
                               ["method": "POST", "route": "/api/entities/{entity}", "status": "2xx"]) >= 1)
            #expect(Self.value(m, "pylon_http_requests", "pylon_http_requests_total",
                               ["method": "GET", "route": "unmatched", "status": "4xx"]) >= 1)
            let labels = m.values.flatMap { $0.samples.flatMap { $0.labels.values } }
            #expect(!labels.contains { $0.contains(id) }, "a raw path became a label: \(labels)")
            #expect(m["pylon_http_request_duration_seconds"]?.type == "histogram")
            #expect(Self.value(m, "pylon_http_request_duration_seconds", "pylon_http_request_duration_seconds_count",
                               ["method": "GET", "route": "/api/entities/{entity}/{id}"]) >= 1)
            #expect(m["pylon_write_commit_duration_seconds"]?.type == "histogram")
            #expect(Self.value(m, "pylon_write_batch_jobs", "pylon_write_batch_jobs_count", [:]) >= 1)
            #expect(m["pylon_realtime_fanout_duration_seconds"]?.type == "histogram")
            #expect(m["pylon_uptime_seconds"]?.type == "gauge")
            #expect(m["pylon_realtime_connections"]?.type == "gauge")
            #expect(m["pylon_realtime_queued_messages"]?.type == "gauge")
            #expect(Self.value(m, "pylon_plugin_calls", "pylon_plugin_calls_total", ["capability": "store", "call": "execute"]) >= 1)
        }
    }

    @Test("JSON (no Accept for text): Pylon's shape plus counters, gauges, histograms and routes; counters move with requests")
    func jsonShapeAndCountersMove() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let id = try #require(try await host.request("POST", "/api/entities/Todo", json: #"{"title":"a"}"#).json["id"].string)
        let before = try await host.request("GET", "/metrics", token: HostProcess.adminToken)
        #expect(before.status == 200, "\(before.body)")
        let b = before.json
        #expect(b["uptime_secs"].int != nil, "\(before.body)")
        for key in ["total", "ok", "error"] { #expect(b["requests"][key].int != nil, "requests.\(key): \(before.body)") }
        for m in ["GET", "POST", "PATCH", "DELETE"] { #expect(b["methods"][m].int != nil, "methods.\(m): \(before.body)") }
        #expect(b["gauges"]["realtime_connections"].int != nil || b["gauges"]["realtime_connections"].double != nil, "\(before.body)")
        #expect(b["histograms"]["http_request_duration_seconds"]["count"].int != nil, "\(before.body)")
        let route = "GET /api/entities/{entity}/{id}"
        let routeBefore = b["routes"][route]["2xx"].int ?? 0
        let totalBefore = try #require(b["requests"]["total"].int)
        let errorsBefore = try #require(b["requests"]["error"].int)
        for _ in 0..<5 { #expect(try await host.request("GET", "/api/entities/Todo/\(id)").status == 200) }
        #expect(try await host.request("DELETE", "/api/entities/Todo/missing-row").status == 404)
        let after = try await host.request("GET", "/metrics", token: HostProcess.adminToken).json
        #expect(after["routes"][route]["2xx"].int == routeBefore + 5, "\(String(describing: after["routes"]))")
        // + the 5 reads, the delete and the first /metrics (counted once answered).
        #expect((after["requests"]["total"].int ?? 0) >= totalBefore + 7)
        #expect((after["requests"]["error"].int ?? 0) >= errorsBefore + 1)
        #expect((after["counters"]["http_requests_total"].int ?? 0) == after["requests"]["total"].int)
        #expect((after["counters"]["write_batches_total"].int ?? 0) >= 1, "\(String(describing: after["counters"]))")
    }

    @Test("Realtime: connections gauge, fan-out latency and deliveries move with a live WebSocket subscriber")
    func realtime() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        let ws = try await TestWebSocket.connect(port: host.port, token: HostProcess.adminToken)
        let id = try await host.create("Todo", #"{"title":"live"}"#)
        _ = try await ws.waitForEvent(rowID: id)
        let m = try await Self.scrape(host)
        #expect(Self.value(m, "pylon_realtime_connections", "pylon_realtime_connections", [:]) == 1)
        #expect(Self.value(m, "pylon_realtime_fanout_duration_seconds", "pylon_realtime_fanout_duration_seconds_count", [:]) >= 1)
        #expect(Self.value(m, "pylon_realtime_deliveries", "pylon_realtime_deliveries_total", [:]) >= 1)
        #expect(m["pylon_realtime_queue_depth_max"]?.type == "gauge")
        ws.disconnect()
        var open: Double?
        for _ in 0..<400 {
            open = try await host.request("GET", "/metrics", token: HostProcess.adminToken).json["gauges"]["realtime_connections"].double
            if open == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(open == 0, "the gauge did not return to 0 after the subscriber left")
    }

    @Test("Outside --dev only the admin reads /metrics, in both formats; in --dev anyone does")
    func adminOnlyOutsideDev() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false)
        defer { host.stop() }
        for accept in ["application/json", "text/plain"] {
            let anonymous = try await host.rawRequest("GET", "/metrics", headers: ["Accept": accept])
            #expect(anonymous.status == 403 && anonymous.json.errorCode == "FORBIDDEN", "\(accept): \(anonymous.status) \(anonymous.body)")
            let wrong = try await host.rawRequest("GET", "/metrics", token: "not-the-admin-token", headers: ["Accept": accept])
            #expect(wrong.status == 401 || wrong.status == 403, "\(accept): \(wrong.status) \(wrong.body)")
            #expect(!wrong.body.contains("pylon_"), "no figures without the admin token")
        }
        let dev = try await HostProcess.start(manifest: Self.manifest)
        defer { dev.stop() }
        #expect(try await dev.request("GET", "/metrics").status == 200)
    }

    @Test("Hostile paths, methods and function names add no series: labels come from route templates and known functions only")
    func hostileNamesAddNoSeries() async throws {
        let host = try await FunctionsTests.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        #expect(try await host.request("POST", "/api/fn/whoami", json: "{}").status == 200)
        #expect(try await host.request("POST", "/api/fn/noSuchFunction", json: "{}").status == 404)
        #expect(try await host.request("GET", "/nothing-here").status == 404)
        #expect(try await host.request("GET", "/api/entities/Nope/nope").status >= 400)
        #expect(try await host.request("PURGE", "/api/entities/Todo").status >= 400)
        #expect(try await host.request("BREW", "/api/entities/Todo/x").status >= 400)
        _ = try await Self.seriesCount(host) // /metrics' own series
        let seriesBefore = try await Self.seriesCount(host)
        for i in 0..<60 {
            let junk = "x\(i)-\(UUID().uuidString.prefix(8))"
            _ = try await host.request("GET", "/\(junk)/\(i)")
            _ = try await host.request("GET", "/api/entities/\(junk)/\(junk)")
            _ = try await host.request("POST", "/api/fn/\(junk)", json: "{}")
            _ = try await host.request(i % 2 == 0 ? "PURGE" : "BREW", "/api/entities/Todo/\(junk)")
        }
        let m = try await Self.scrape(host)
        let seriesAfter = try await Self.seriesCount(host)
        #expect(seriesAfter == seriesBefore, "240 hostile requests added series: \(seriesBefore) → \(seriesAfter)")
        let labels = Set(m.values.flatMap { $0.samples.flatMap { $0.labels.values } })
        #expect(!labels.contains { $0.hasPrefix("x") && $0.contains("-") }, "a client's name became a label: \(labels.sorted())")
        #expect(Self.value(m, "pylon_fn_calls", "pylon_fn_calls_total", ["function": "whoami", "outcome": "ok"]) == 1)
        #expect(Self.value(m, "pylon_fn_calls", "pylon_fn_calls_total", ["function": "(unknown)", "outcome": "error"]) == 61)
        #expect(Self.value(m, "pylon_fn_call_duration_seconds", "pylon_fn_call_duration_seconds_count", ["function": "whoami"]) == 1)
        #expect(Self.value(m, "pylon_plugin_calls", "pylon_plugin_calls_total", ["capability": "functions", "call": "start_call"]) >= 1)
        #expect(Self.value(m, "pylon_http_requests", "pylon_http_requests_total",
                           ["method": "POST", "route": "/api/fn/{name}", "status": "2xx"]) == 1)
    }

    /// Sample lines of the text format (every series, histogram buckets included).
    static func seriesCount(_ host: HostProcess) async throws -> Int {
        let r = try await host.rawRequest("GET", "/metrics", token: HostProcess.adminToken, headers: ["Accept": "text/plain"])
        return r.body.split(separator: "\n").filter { !$0.hasPrefix("#") }.count
    }
}

/// The metric store's pure parts, in process.
@Suite("Metrics: series tables and names reported through the ABI")
struct MetricsUnitTests {
    @Test("A series table keeps at most its capacity of names, and finds each again")
    func seriesTableIsBounded() {
        final class Box: Sendable { let name: String; init(_ n: String) { name = n } }
        let table = SeriesTable<Box>(capacity: 10) { Box($0) }
        let made = (0..<100).compactMap { table.series("name-\($0)") }
        #expect(made.count == 10)
        for b in made { #expect(table.series(b.name) === b) }
        #expect(table.series("one more") == nil)
    }

    @Test("Names from plugins: invalid ones, host families and the other kind are refused without a crash; bounded")
    func pluginNames() {
        let m = Metrics()
        m.set("http_requests_total", 1)        // a labeled host family
        m.set("http_request_duration_seconds_count", 1) // a histogram's sample name
        m.add("realtime_connections", 1)       // a host gauge, as a counter
        m.set("Bad Name!", 1)
        m.set("fn_workers_ready", 3)
        m.add("fn_workers_ready", 1)           // now a gauge: refused as a counter
        for i in 0..<(DynamicSeries.limit + 50) { m.add("plugin_counter_\(i)", 1) }
        let json = MetricsJSON.encode(m.prometheusText())
        #expect(json["gauges"]?["fn_workers_ready"] == .double(3))
        let counters = json["counters"]?.objectValue ?? []
        #expect(counters.filter { $0.0.hasPrefix("plugin_counter_") }.count == DynamicSeries.limit - 1)
        // Two host families, one bad name, a gauge asked for as a counter, 51 past the limit.
        #expect(json["counters"]?["metrics_refused_total"] == .int(55))
    }

    @Test("Timer observations from many threads, batched per thread, all reach the histogram by the next scrape")
    func batchedTimers() {
        let m = Metrics()
        let threads = 8, each = TimerBatches.capacity * 3 + 17  // full batches and a partial one
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for i in 0..<each { m.commitDuration.recordNanoseconds(Int64(1_000 + i)) }
        }
        let text = String(decoding: m.prometheusText(), as: UTF8.self)
        let count = text.split(separator: "\n").first { $0.hasPrefix("pylon_write_commit_duration_seconds_count") }
        #expect(count.map(String.init) == "pylon_write_commit_duration_seconds_count \(threads * each)")
        // Every observation (1 to ~1.8 µs) is within the first bucket (100 µs).
        #expect(text.contains("pylon_write_commit_duration_seconds_bucket{le=\"0.0001\"} \(threads * each)"))
        // A second scrape adds nothing.
        let again = String(decoding: m.prometheusText(), as: UTF8.self)
        #expect(again.contains("pylon_write_commit_duration_seconds_count \(threads * each)\n"))
    }

    @Test("Label values with quotes, backslashes and newlines round-trip through the text format")
    func labelEscapes() throws {
        let s = try #require(MetricsJSON.sample(#"x_total{a="q\"b\\c\nd",b="}"} 42"#))
        #expect(s.name == "x_total" && s.value == 42)
        #expect(s.label("a") == "q\"b\\c\nd" && s.label("b") == "}")
    }
}
