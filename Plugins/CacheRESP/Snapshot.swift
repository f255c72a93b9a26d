#if canImport(Glibc)
import Glibc
#endif

/// Snapshot persistence: the whole keyspace in one file, written to a temp file and
/// renamed over the old one (a crash mid-write leaves the previous snapshot intact).
///
/// Format (little-endian): "PYLONCACHE" 0x01, then per key: kind u8, expireAt i64, key,
/// value; then 0xFF and an FNV-1a 64 checksum of everything before it. Byte strings are
/// u64 length + bytes. A file that fails the magic, checksum or structure is reported
/// and set aside (renamed), never half-loaded.
enum Snapshot {
    static let magic: [UInt8] = Array("PYLONCACHE".utf8) + [1]

    enum LoadResult {
        case loaded(Int)
        case missing
        case corrupt(String, movedTo: String)
    }

    private static func fnv(_ p: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return h
    }

    private struct Writer {
        var buf: [UInt8] = []
        mutating func u8(_ v: UInt8) { buf.append(v) }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { buf.append(contentsOf: $0) } }
        mutating func bytes(_ a: Arg) {
            u64(UInt64(a.len))
            buf.append(contentsOf: UnsafeBufferPointer(start: a.ptr, count: a.len))
        }
    }

    /// Writes the snapshot; returns a problem description, or nil on success.
    static func save(_ db: Keyspace, path: String) -> String? {
        var w = Writer()
        w.buf.reserveCapacity(db.used + 64)
        w.buf.append(contentsOf: magic)
        let now = unixMillis()
        let map = db.map
        for i in 0..<map.top where map.isLive(i) {
            let e = map.values[i]
            if e.expireAt != 0 && e.expireAt <= now { continue }
            w.u8(e.kind.rawValue)
            w.u64(UInt64(bitPattern: e.expireAt))
            w.bytes(map.keys[i].arg)
            switch e.kind {
            case .string:
                e.withString { w.bytes($0) }
            case .list:
                let l = e.list
                w.u64(UInt64(l.count))
                for k in 0..<l.count { w.bytes(l[k].arg) }
            case .hash:
                let h = e.hash.map
                w.u64(UInt64(h.count))
                for k in 0..<h.top where h.isLive(k) {
                    w.bytes(h.keys[k].arg)
                    w.bytes(h.values[k].arg)
                }
            case .set:
                let s = e.set
                w.u64(UInt64(s.map.count))
                s.forEach { w.bytes($0) }
            case .zset:
                let z = e.zset
                w.u64(UInt64(z.count))
                for r in 0..<z.count {
                    w.bytes(z.member(at: r))
                    w.u64(z.score(at: r).bitPattern)
                }
            }
        }
        w.u8(0xFF)
        let sum = w.buf.withUnsafeBytes { fnv($0) }
        w.u64(sum)
        let tmp = path + ".tmp"
        guard let f = fopen(tmp, "wb") else { return "cannot open \(tmp): \(String(cString: strerror(errno)))" }
        let written = w.buf.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let flushed = fflush(f) == 0 && fsync(fileno(f)) == 0
        fclose(f)
        guard written == w.buf.count, flushed else {
            unlink(tmp)
            return "short write to \(tmp)"
        }
        if rename(tmp, path) != 0 {
            return "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))"
        }
        return nil
    }

    private struct Reader {
        let p: UnsafeRawBufferPointer
        var pos: Int
        mutating func u8() -> UInt8? {
            guard pos < p.count else { return nil }
            defer { pos += 1 }
            return p[pos]
        }
        mutating func u64() -> UInt64? {
            guard pos + 8 <= p.count else { return nil }
            defer { pos += 8 }
            return UInt64(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
        }
        mutating func bytes() -> Arg? {
            guard let n = u64(), n <= UInt64(p.count - pos) else { return nil }
            let a = Arg(ptr: p.baseAddress!.assumingMemoryBound(to: UInt8.self) + pos, len: Int(n))
            pos += Int(n)
            return a
        }
    }

    static func load(path: String, into db: Keyspace) -> LoadResult {
        guard let f = fopen(path, "rb") else { return .missing }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        fclose(f)
        if let problem = data.withUnsafeBytes({ parse($0, into: db) }) {
            db.flush()
            let moved = path + ".corrupt-\(unixMillis())"
            if rename(path, moved) != 0 { return .corrupt(problem + "; could not rename it", movedTo: path) }
            return .corrupt(problem, movedTo: moved)
        }
        return .loaded(db.count)
    }

    /// Loads records into `db`; returns a problem or nil.
    private static func parse(_ p: UnsafeRawBufferPointer, into db: Keyspace) -> String? {
        guard p.count >= magic.count + 9 else { return "file too short" }
        guard Array(p[0..<magic.count]) == magic else { return "not a Pylon cache snapshot (bad magic)" }
        let body = UnsafeRawBufferPointer(rebasing: p[0..<(p.count - 8)])
        let stored = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: p.count - 8, as: UInt64.self))
        guard fnv(body) == stored else { return "checksum mismatch" }
        var r = Reader(p: body, pos: magic.count)
        let now = unixMillis()
        while true {
            guard let kindByte = r.u8() else { return "truncated" }
            if kindByte == 0xFF { break }
            guard let kind = Kind(rawValue: kindByte), let exp = r.u64(), let key = r.bytes() else { return "bad record header" }
            let expireAt = Int64(bitPattern: exp)
            var entry: Entry
            switch kind {
            case .string:
                guard let v = r.bytes() else { return "bad string value" }
                entry = Entry(string: RBytes(copying: v))
            case .list:
                guard let n = r.u64() else { return "bad list" }
                let l = ListValue()
                for _ in 0..<n {
                    guard let v = r.bytes() else { return "bad list element" }
                    l.pushBack(RBytes(copying: v))
                }
                entry = Entry(kind: .list, obj: l)
            case .hash:
                guard let n = r.u64() else { return "bad hash" }
                let h = HashValue()
                for _ in 0..<n {
                    guard let f = r.bytes(), let v = r.bytes() else { return "bad hash field" }
                    _ = h.set(f, v)
                }
                entry = Entry(kind: .hash, obj: h)
            case .set:
                guard let n = r.u64() else { return "bad set" }
                let s = SetValue()
                for _ in 0..<n {
                    guard let m = r.bytes() else { return "bad set member" }
                    _ = s.add(m)
                }
                entry = Entry(kind: .set, obj: s)
            case .zset:
                guard let n = r.u64() else { return "bad zset" }
                let z = ZSetValue()
                for _ in 0..<n {
                    guard let m = r.bytes(), let bits = r.u64() else { return "bad zset member" }
                    z.set(m, Double(bitPattern: bits))
                }
                entry = Entry(kind: .zset, obj: z)
            }
            if expireAt != 0 && expireAt <= now {
                entry.dispose()
                continue
            }
            if db.lookup(key) >= 0 {
                entry.dispose()
                return "duplicate key"
            }
            let i = db.add(key, entry)
            db.recharge(i) // an empty container (only in a crafted file) is dropped here
            if expireAt != 0 && db.map.isLive(i) { db.setExpire(i, expireAt) }
        }
        guard r.pos == body.count else { return "trailing bytes" }
        return nil
    }
}
