#if canImport(Glibc)
import Glibc
#endif

extension HostSettings {
    /// Hides the values of the host's settings from `/proc/<pid>/environ`. That file shows
    /// the environment block the kernel laid out at exec (from `env_start` to `env_end` in
    /// `/proc/<pid>/stat`), and any process of the same user may read it: a Bun worker, the
    /// function code it runs and every npm package that code imports. Each setting is moved
    /// to the heap (`setenv` allocates a new `NAME=value` and points `environ` at it), then
    /// its value's bytes in that block are zeroed. `getenv`, `ProcessInfo` and plugins loaded
    /// later read the same values as before; a setting given twice keeps the value `getenv`
    /// returned (the first).
    ///
    /// Call it first in `main`, before any thread starts: `setenv` is not thread-safe.
    /// Returns one warning per setting left readable (none when /proc cannot be read: then
    /// nothing can read the block through it either).
    public static func hideFromProcfs() -> [String] {
        #if canImport(Glibc)
        guard let block = InitialEnvironment.read() else { return [] }
        return block.settingNames().compactMap { block.moveToHeap($0) }
        #else
        return []  // no /proc
        #endif
    }
}

#if canImport(Glibc)

/// The environment block the kernel set up at exec: the bytes `/proc/<pid>/environ` shows.
private struct InitialEnvironment {
    let start: UInt
    let end: UInt

    /// The block's bounds from `/proc/self/stat` (fields 50 and 51, Linux 3.5 and later).
    static func read() -> InitialEnvironment? {
        let fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        // The command name (field 2) may hold spaces and parentheses: count after the last ")".
        guard let paren = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(paren + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (the state), so field 50 is fields[47].
        guard fields.count > 48,
              let start = UInt(String(decoding: fields[47], as: UTF8.self)),
              let end = UInt(String(decoding: fields[48], as: UTF8.self)), start < end else { return nil }
        return InitialEnvironment(start: start, end: end)
    }

    func contains(_ p: UnsafePointer<CChar>) -> Bool {
        let address = UInt(bitPattern: p)
        return address >= start && address < end
    }

    /// The entries of `environ` that lie in this block and are host settings.
    func settingEntries() -> [UnsafeMutablePointer<CChar>] {
        var out: [UnsafeMutablePointer<CChar>] = []
        var p = environ
        while let entry = p.pointee {
            if contains(entry) && HostSettings.isHostSetting(entry) && strchr(entry, 0x3D) != nil { out.append(entry) }
            p += 1
        }
        return out
    }

    /// The distinct names (NUL-terminated) of the settings in this block, in order.
    func settingNames() -> [[CChar]] {
        var names: [[CChar]] = []
        for entry in settingEntries() {
            let length = entry.distance(to: strchr(entry, 0x3D)!)
            let name: [CChar] = Array(UnsafeBufferPointer(start: entry, count: length)) + [0]
            if !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Gives `name` a heap copy of its value and zeroes the value of every entry of it in
    /// this block; nil when done, else why its value stays readable.
    func moveToHeap(_ name: [CChar]) -> String? {
        let label = String(decoding: name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let originals = settingEntries().filter { entry in name.withUnsafeBufferPointer { n in
            strncmp(entry, n.baseAddress!, n.count - 1) == 0 && entry[n.count - 1] == 0x3D } }
        guard let current = getenv(name), let value = strdup(current) else {
            return "cannot copy \(label) out of /proc/self/environ (out of memory); it stays readable there"
        }
        defer { free(value) }
        // Every entry of the name goes, so none of them is left for getenv or ProcessInfo to
        // find once it is zeroed; the new one is the heap copy.
        unsetenv(name)
        guard setenv(name, value, 1) == 0 else {
            if let first = originals.first { putenv(first) }
            return "cannot copy \(label) out of /proc/self/environ (\(String(cString: strerror(errno)))); it stays readable there"
        }
        guard let moved = getenv(name), !contains(moved) else {
            return "this C library's setenv left \(label) in the initial environment block; it stays readable in /proc/self/environ"
        }
        for entry in originals {
            let valueStart = strchr(entry, 0x3D)! + 1
            memset(valueStart, 0, strlen(valueStart))
        }
        return nil
    }
}
#endif
