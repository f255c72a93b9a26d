import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Free loopback ports for the test targets' servers (hosts, PostgreSQL, SMTP, ...), one
/// implementation for the host's and the Swift client's tests.
///
/// The kernel hands a port out again as soon as its socket is closed, also within one test
/// process: two servers started at once could then be told the same port, and the one that
/// loses the bind race would have its health check answered by the other (seen in CI: one
/// test's users wrote into another test's host). Never handing a port out twice removes that
/// race inside a process; a caller still checks that its own child listens.
public let handedOutPorts = HandedOutPorts()

public final class HandedOutPorts: @unchecked Sendable {
    private let lock = NSLock()
    private var ports = Set<Int>()
    /// True if `port` was not handed out before (and records it).
    public func claim(_ port: Int) -> Bool { lock.withLock { ports.insert(port).inserted } }
}

/// Why no port could be had.
public struct LoopbackPortError: Error, CustomStringConvertible {
    public let description: String
}

/// A free loopback port not handed out before in this process: bind 127.0.0.1:0, read back
/// the port the kernel chose, close.
public func freeLoopbackPort() throws -> Int {
    for _ in 0..<1000 {
        let port = try kernelChosenLoopbackPort()
        if handedOutPorts.claim(port) { return port }
    }
    throw LoopbackPortError(description: "no loopback port left that this test process has not used")
}

private func kernelChosenLoopbackPort() throws -> Int {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw LoopbackPortError(description: "socket() failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw LoopbackPortError(description: "bind(127.0.0.1:0) failed: errno \(errno)") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard named == 0 else { throw LoopbackPortError(description: "getsockname() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
