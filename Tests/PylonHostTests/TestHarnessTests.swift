import Foundation
import Testing
import PylonTestPorts
#if canImport(Glibc)
import Glibc
#endif

/// The harness's own guarantees, which every black-box suite relies on: suites run in
/// parallel in one process and each starts hosts on "free" ports, so a host must never be
/// mistaken for another test's host that happens to listen on the same port.
@Suite("Test harness: ports and host identity")
struct TestHarnessTests {
    @Test("freeLoopbackPort never hands out the same port twice in one process, also not as part of a run")
    func portsAreNotReused() throws {
        var seen = Set<Int>()
        for _ in 0..<300 {
            let p = try freeLoopbackPort()
            #expect(seen.insert(p).inserted, "port \(p) handed out twice")
        }
        let run = try freeLoopbackPortRun(count: 3)
        for p in run..<(run + 3) { #expect(seen.insert(p).inserted, "port \(p) of a run handed out before") }
        #expect(!seen.contains(try freeLoopbackPort()))
    }

    @Test("processListens tells the host that listens on a port from any other process")
    func listenerIdentity() async throws {
        let host = try await HostProcess.start(manifest: DataPlaneTests.manifest)
        defer { host.kill9() }
        let pid = try #require(host.pid)
        #expect(processListens(pid: pid, port: host.port))
        #expect(!processListens(pid: getpid(), port: host.port), "the test process does not listen there")
        #expect(!processListens(pid: pid, port: try freeLoopbackPort()), "nobody listens on a fresh free port")
    }
}
