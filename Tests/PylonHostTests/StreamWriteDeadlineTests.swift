import Foundation
import Testing
@testable import PylonCore
@testable import PylonEdge

/// The write-progress deadline of answers written as they come (PYLON_WRITE_TIMEOUT): an SSE
/// stream or a streamed function call whose client stops reading is closed once its writes
/// make no progress for that long, as a WebSocket is (RelayBacklogTests). Before it, such a
/// client kept its connection, and what was queued for it, forever. Clients with full
/// sockets: run with the slow-client suites (Makefile). Nothing asserts on timing; waits
/// have generous bounds.
@Suite("Stream write deadline: SSE and streamed function calls whose client stops reading (black-box, real pylon-host)")
struct StreamWriteDeadlineTests {
    static let admin = HostProcess.adminToken

    /// A function that streams `n` chunks of about 60 KB, then returns.
    static let functions = [
        "functions/flood.ts": """
        import { action, v } from "@pylon/functions";
        export default action({ args: { n: v.int() }, async handler(ctx, { n }) {
          const pad = "x".repeat(60000);
          for (let i = 0; i < n; i++) ctx.stream.write(`${i}-${pad}`);
          return { sent: n };
        } });
        """,
    ]

    @Test("PYLON_WRITE_TIMEOUT sets every stream's deadline (30 s by default); PYLON_WS_WRITE_TIMEOUT, when set, the WebSocket's alone; nonsense is refused")
    func settings() throws {
        let d = try HostConfig.fromEnvironment([:])
        #expect(d.writeTimeout == 30 && RealtimeConfig(d).writeTimeout == 30)
        let both = try HostConfig.fromEnvironment(["PYLON_WRITE_TIMEOUT": "500ms"])
        #expect(both.writeTimeout == 0.5 && RealtimeConfig(both).writeTimeout == 0.5)
        let split = try HostConfig.fromEnvironment(["PYLON_WRITE_TIMEOUT": "10", "PYLON_WS_WRITE_TIMEOUT": "0"])
        #expect(split.writeTimeout == 10 && RealtimeConfig(split).writeTimeout == 0)
        let wsOnly = try HostConfig.fromEnvironment(["PYLON_WS_WRITE_TIMEOUT": "5"])
        #expect(wsOnly.writeTimeout == 30 && RealtimeConfig(wsOnly).writeTimeout == 5)
        #expect(throws: HostError.self) { try HostConfig.fromEnvironment(["PYLON_WRITE_TIMEOUT": "soon"]) }
    }

    @Test("Hostile (PYLON_WRITE_TIMEOUT=5, a queue budget it never reaches): an SSE stream whose client stops reading, with 9.6 MB of changes for it, is closed by the write deadline (not by a queue overflow); a reading stream gets every change and stays open. On the API port and on Pylon's SSE port (+2)",
          arguments: [false, true])
    func stalledEventStreamIsClosed(compatPort: Bool) async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest,
                                               env: ["PYLON_WRITE_TIMEOUT": "5", "PYLON_SYNC_QUEUE_BYTES": "\(64 << 20)"],
                                               dev: true, compatPorts: compatPort)
        defer { host.kill9() }
        let port = compatPort ? host.sseCompatPort : host.port
        let path = compatPort ? "/" : "/api/sync/events"
        // Response head read, then nothing: a 4 KiB receive window fills at once.
        let stalled = try await TestEventStream.connect(port: port, path: path, token: Self.admin, receiveBuffer: 4096,
                                                        reading: false, label: "stalled")
        #expect(stalled.status == 200, "\(stalled.summary)")
        let reader = try await TestEventStream.connect(port: port, path: path, token: Self.admin, label: "reader")
        try await reader.waitForComment("connected")

        // More than the kernel buffers take (~4 MB): the host's writes to it stop leaving.
        let count = 160
        _ = try await host.createItems(count, prefix: "wedge", padding: 60_000)
        try await reader.waitForChangeEvents(count, timeout: 120)
        try await RelayBacklogTests.waitUntil("the stalled stream closed by the write deadline") {
            try await host.metricCounter("http_write_timeouts_total") ?? 0 >= 1
        }
        // Its queue never overflowed: the deadline closed it, not the slow-consumer watchdog.
        #expect(try await host.metricCounter("realtime_queue_fallbacks_total") ?? 0 == 0)
        stalled.startReading()
        try await stalled.waitForEnd(timeout: 60)
        #expect(stalled.changeEventCount < count, "a closed stalled stream cannot have had every change: \(stalled.summary)")

        // The happy twin: the reading stream got every change, is still open and gets more.
        #expect(try await host.request("GET", "/health").status == 200)
        let id = try await host.create("Item", #"{"title":"after the wedge"}"#)
        try await reader.waitForEvent(rowID: id, timeout: 60)
        #expect(reader.ended == nil, "\(reader.summary)")
        #expect(try await host.metricCounter("http_write_timeouts_total") == 1, "only the stalled stream was closed")
        reader.close()
    }

    @Test("Hostile (PYLON_WRITE_TIMEOUT=5): a streamed function call (Accept: text/event-stream) whose client stops reading is closed by the write deadline; one that reads gets every chunk and the result")
    func stalledFunctionStreamIsClosed() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, env: ["PYLON_WRITE_TIMEOUT": "5", "PYLON_FN_WORKERS": "1"],
                                               dev: true, files: Self.functions)
        defer { host.kill9() }
        let count = 160
        // The happy twin first: all of it, then `event: result`, then the answer ends.
        let reader = try await TestEventStream.connect(port: host.port, path: "/api/fn/flood", token: Self.admin,
                                                       body: #"{"n":\#(count)}"#, label: "reader")
        #expect(reader.status == 200, "\(reader.summary) \(reader.body)")
        let result = try await reader.waitForNamedEvent("result", timeout: 120)
        #expect(reader.events.filter { $0.event == nil }.count == count, "\(reader.summary)")
        #expect((result.json as Any?)["sent"].int == count, "\(result.data)")
        try await reader.waitForEnd(timeout: 60)

        let stalled = try await TestEventStream.connect(port: host.port, path: "/api/fn/flood", token: Self.admin,
                                                        body: #"{"n":\#(count)}"#, receiveBuffer: 4096, reading: false, label: "stalled")
        #expect(stalled.status == 200, "\(stalled.summary)")
        try await RelayBacklogTests.waitUntil("the stalled function stream closed by the write deadline") {
            try await host.metricCounter("http_write_timeouts_total") ?? 0 >= 1
        }
        stalled.startReading()
        try await stalled.waitForEnd(timeout: 60)
        #expect(!stalled.events.contains { $0.event == "result" }, "it never took the whole stream: \(stalled.summary)")
        #expect(try await host.request("GET", "/health").status == 200)
    }
}
