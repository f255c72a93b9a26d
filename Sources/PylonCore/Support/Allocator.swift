#if canImport(Glibc)
import Glibc

#endif

/// Which malloc serves this process. pylon-host links jemalloc (Package.swift); a build
/// with PYLON_SYSTEM_MALLOC=1, or an embedder of the PylonHost library, runs on the C
/// library's. Logged at startup, since it moves the host's CPU per request noticeably.
public enum Allocator {
    /// "jemalloc 5.3.0-…" or "system malloc".
    public static var description: String {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallctl") else { return "system malloc" }
        typealias MallCtl = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?,
                                            UnsafeMutableRawPointer?, Int) -> Int32
        let mallctl = unsafeBitCast(sym, to: MallCtl.self)
        var version: UnsafePointer<CChar>?
        var size = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &size, nil, 0) == 0, let version else { return "jemalloc" }
        return "jemalloc \(String(cString: version))"
    }
}
