import Foundation
import PylonPluginABI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plugin file that passed the handshake. The descriptor is owned by the plugin and
/// lives for the whole process (the library is loaded with RTLD_NODELETE, never closed).
public struct LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let id: String
    public let version: String
    public let description: String
    public let abiMajor: UInt32
    public let abiMinor: UInt32
    public let capabilities: [String]
    /// Non-fatal notes from the handshake (e.g. header hash differs).
    public let warnings: [String]
    let descriptor: UnsafePointer<pylon_plugin_descriptor>

    public var fileName: String { path.split(separator: "/").last.map(String.init) ?? path }
}

/// A file in the plugins folder that was not loaded, and why. The reason is one line a
/// user can act on.
public struct PluginRefusal: Sendable, Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var fileName: String { path.split(separator: "/").last.map(String.init) ?? path }
    public var description: String { "\(fileName): refused: \(reason)" }
}

/// Loads `*.so` files from the `--plugins` folder and performs the ABI handshake
/// (DESIGN.md §3). Nothing a plugin file contains can stop or crash the host at this
/// stage: every failure becomes a `PluginRefusal`. (A plugin's own code is trusted once
/// loaded; a library constructor that crashes is outside what any loader can catch.)
public enum PluginLoader {
    /// The oldest descriptor layout this host understands: everything up to `get_interface`.
    static let minimumDescriptorSize = MemoryLayout<pylon_plugin_descriptor>.size

    public struct Scan: Sendable {
        public var loaded: [LoadedPlugin] = []
        public var refused: [PluginRefusal] = []
    }

    /// Scans `directory` in file-name order. A second file declaring an id already loaded is
    /// refused (first one wins).
    public static func scan(directory: String) -> Scan {
        var scan = Scan()
        guard let dir = opendir(directory) else {
            scan.refused.append(PluginRefusal(path: directory, reason: "cannot open plugins folder (\(String(cString: strerror(errno)))); pass an existing folder with --plugins"))
            return scan
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasSuffix(".so") || name.contains(".so.") || name.hasSuffix(".dylib") { names.append(name) }
        }
        closedir(dir)
        for name in names.sorted() {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            switch load(path: path) {
            case let .failure(r): scan.refused.append(r)
            case let .success(p):
                if let first = scan.loaded.first(where: { $0.id == p.id }) {
                    scan.refused.append(PluginRefusal(path: path, reason: "plugin id \"\(p.id)\" is already loaded from \(first.fileName); remove one of the two files"))
                } else {
                    scan.loaded.append(p)
                }
            }
        }
        return scan
    }

    /// Loads one file and checks its descriptor.
    public static func load(path: String) -> Result<LoadedPlugin, PluginRefusal> {
        func refuse(_ reason: String) -> Result<LoadedPlugin, PluginRefusal> {
            .failure(PluginRefusal(path: path, reason: reason))
        }
        // Cheap sanity check before dlopen: is it an ELF (or Mach-O) shared object at all?
        if let problem = checkObjectFile(path) { return refuse(problem) }
        // NODELETE: Swift plugins must never be unmapped (the runtime keeps pointers into
        // them). LOCAL: plugins cannot interpose on each other's symbols.
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let msg = dlerror().map { String(cString: $0) } ?? "unknown error"
            return refuse("not a loadable shared library: \(msg)")
        }
        guard let sym = dlsym(handle, PYLON_PLUGIN_ENTRY_SYMBOL) else {
            return refuse("no \(PYLON_PLUGIN_ENTRY_SYMBOL) symbol; is this a Pylon plugin? (export `const pylon_plugin_descriptor *pylon_plugin_entry(void)`)")
        }
        let entry = unsafeBitCast(sym, to: pylon_plugin_entry_fn.self)
        guard let raw = entry() else { return refuse("\(PYLON_PLUGIN_ENTRY_SYMBOL) returned NULL") }
        // Read only the leading fixed fields first: a descriptor from another major version
        // may be shorter than ours.
        let rawBytes = UnsafeRawPointer(raw)
        let structSize = rawBytes.load(as: UInt32.self)
        let major = rawBytes.load(fromByteOffset: 4, as: UInt32.self)
        let minor = rawBytes.load(fromByteOffset: 8, as: UInt32.self)
        if major != UInt32(PYLON_ABI_MAJOR) {
            let fix = major < UInt32(PYLON_ABI_MAJOR)
                ? "rebuild the plugin against the ABI \(PYLON_ABI_MAJOR) pylon_plugin.h (docs/writing-a-plugin.md says what changed)"
                : "use a host that speaks ABI \(major), or rebuild the plugin against this host's pylon_plugin.h"
            return refuse("built for plugin ABI \(major).\(minor), this host speaks ABI \(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR); \(fix)")
        }
        if Int(structSize) < minimumDescriptorSize {
            return refuse("descriptor struct_size \(structSize) is smaller than ABI \(PYLON_ABI_MAJOR) requires (\(minimumDescriptorSize)); rebuild the plugin against this host's pylon_plugin.h")
        }
        let d = raw.pointee
        let layout: [(String, UInt32, Int)] = [
            ("pointer", d.sizeof_pointer, MemoryLayout<UnsafeRawPointer>.size),
            ("pylon_value", d.sizeof_value, MemoryLayout<pylon_value>.size),
            ("pylon_error", d.sizeof_error, MemoryLayout<pylon_error>.size),
        ]
        for (name, theirs, ours) in layout where Int(theirs) != ours {
            return refuse("layout mismatch: sizeof(\(name)) is \(theirs) in the plugin, \(ours) in the host; rebuild the plugin for this platform")
        }
        if Int(d.sizeof_host) > MemoryLayout<pylon_host_v1>.size && minor <= UInt32(PYLON_ABI_MINOR) {
            return refuse("layout mismatch: the plugin's pylon_host_v1 (\(d.sizeof_host) bytes) is larger than the host's for the same ABI minor")
        }
        guard let idPtr = d.plugin_id, d.create != nil, d.get_interface != nil else {
            return refuse("descriptor is incomplete (plugin_id, create and get_interface are required)")
        }
        let id = String(cString: idPtr)
        guard !id.isEmpty, id.utf8.count <= 128 else { return refuse("plugin_id is empty or longer than 128 bytes") }
        var caps: [String] = []
        if let list = d.capabilities {
            guard d.capability_count <= 64 else { return refuse("capability_count \(d.capability_count) is implausible") }
            for i in 0..<Int(d.capability_count) {
                if let c = list[i] { caps.append(String(cString: c)) }
            }
        }
        var warnings: [String] = []
        if d.abi_header_hash != PYLON_ABI_HEADER_HASH {
            warnings.append("built from a different pylon_plugin.h revision (hash \(hex32(d.abi_header_hash)), host \(hex32(PYLON_ABI_HEADER_HASH))); same ABI major, so it loads")
        }
        if minor > UInt32(PYLON_ABI_MINOR) {
            warnings.append("built for ABI minor \(minor), newer than the host's \(PYLON_ABI_MINOR); newer features are unavailable")
        }
        return .success(LoadedPlugin(
            path: path, id: id, version: d.plugin_version.map { String(cString: $0) } ?? "?",
            description: d.description.map { String(cString: $0) } ?? "", abiMajor: major, abiMinor: minor,
            capabilities: caps, warnings: warnings, descriptor: raw))
    }

    /// Returns a refusal reason when `path` is not an ELF/Mach-O object, nil when it may be.
    static func checkObjectFile(_ path: String) -> String? {
        guard let f = fopen(path, "rb") else {
            return "cannot read the file (\(String(cString: strerror(errno))))"
        }
        defer { fclose(f) }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = fread(&magic, 1, 4, f)
        if n < 4 { return "not a shared library (file is \(n) bytes long)" }
        let elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
        let machO: [[UInt8]] = [[0xCF, 0xFA, 0xED, 0xFE], [0xCE, 0xFA, 0xED, 0xFE], [0xCA, 0xFE, 0xBA, 0xBE]]
        if magic == elf || machO.contains(magic) { return nil }
        return "not a shared library (no ELF header; is it a text file named .so?)"
    }
}

/// 0x-prefixed, zero-padded 8-digit hex.
func hex32(_ v: UInt32) -> String {
    let h = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - h.count)) + h
}
