import Foundation
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// Files in one folder: `<dir>/<k0k1>/<key>` for a committed file (256 sub-folders keep any
/// one folder small), `<dir>/tmp/<key>.part` while it is being written. A key is 32 lowercase
/// hex digits from the system's CSPRNG, and `path(of:)` accepts nothing else, so no key can
/// name a path outside the folder. An upload is written to its temp file, then fsync'd,
/// renamed into place and its folder fsync'd: a crash or a failure leaves either the whole
/// file or no file, and temp files a crash left are removed at the next start.
///
/// Threads: every method may be called from any thread; an upload is used by one thread at
/// a time (the ABI's rule), and everything else works on paths alone.
final class LocalFileStore: @unchecked Sendable {
    let dir: String
    let tmpDir: String
    let log: HostLog

    private init(dir: String, log: HostLog) {
        self.dir = dir
        tmpDir = dir + "/tmp"
        self.log = log
    }

    static func open(dir: String, log: HostLog) -> Result<LocalFileStore, StoreFailure> {
        let s = LocalFileStore(dir: dir, log: log)
        // With its parents: the default `data/files` lives in a folder nothing else may
        // have made yet (the store is created after this plugin).
        for d in Self.parents(of: dir) + [dir, s.tmpDir] where mkdir(d, 0o700) != 0 && errno != EEXIST {
            return .failure(Self.failure(errno, "cannot create the files folder \(d)"))
        }
        s.removeLeftovers()
        return .success(s)
    }

    /// The folders above `dir`, outermost first (`a/b/c` → `a`, `a/b`).
    static func parents(of dir: String) -> [String] {
        var out: [String] = []
        var path = ""
        let parts = dir.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        for (i, part) in parts.enumerated() {
            path += i == 0 ? String(part) : "/" + part
            if !part.isEmpty && part != "." && part != ".." { out.append(path) }
        }
        return out
    }

    /// Temp files of uploads that were in progress when a process died. Another live
    /// process may share the folder (a second host, or `pylon-host backup` / `restore`):
    /// its uploads hold an exclusive `flock` on their temp file until they end, so only
    /// unlocked files are removed — except an empty one less than a minute old, which may
    /// have been created a moment ago and not be locked yet.
    private func removeLeftovers() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: tmpDir) else { return }
        var n = 0
        let cutoff = time(nil) - 60
        for name in names where name.hasSuffix(".part") {
            let path = tmpDir + "/" + name
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var st = stat()
            if flock(fd, LOCK_EX | LOCK_NB) == 0, fstat(fd, &st) == 0, st.st_size > 0 || st.st_mtim.tv_sec < cutoff,
               unlink(path) == 0 { n += 1 }
            close(fd)
        }
        if n > 0 { log(PYLON_LOG_INFO, "pylon.files.local: removed \(n) unfinished upload(s) left by an earlier run") }
    }

    static func newKey() -> String {
        var g = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(32)
        for _ in 0..<2 {
            var word = g.next() as UInt64
            for _ in 0..<16 {
                out.append(hex[Int(word & 0xf)])
                word >>= 4
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `key` is one this store makes (32 lowercase hex digits).
    static func isKey(_ key: String) -> Bool {
        key.utf8.count == 32 && key.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// The committed file's path, or nil for anything that is not a key.
    func path(of key: String) -> String? {
        guard Self.isKey(key) else { return nil }
        return dir + "/" + key.prefix(2) + "/" + key
    }

    func begin() -> Result<LocalUpload, StoreFailure> {
        let key = Self.newKey()
        let tmp = tmpDir + "/" + key + ".part"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return .failure(Self.failure(errno, "cannot create an upload file in \(tmpDir)")) }
        // Held until the upload ends (the fd closes): `removeLeftovers` in another process
        // then leaves this file alone.
        _ = flock(fd, LOCK_EX | LOCK_NB)
        return .success(LocalUpload(key: key, fd: fd, tmpPath: tmp, shardDir: dir + "/" + key.prefix(2), finalPath: path(of: key)!))
    }

    func size(of key: String) -> Result<UInt64, StoreFailure> {
        guard let p = path(of: key) else { return .failure(Self.notFound) }
        var st = stat()
        guard stat(p, &st) == 0 else { return .failure(errno == ENOENT ? Self.notFound : Self.failure(errno, "cannot read the file's size")) }
        return .success(UInt64(st.st_size))
    }

    func read(_ key: String, offset: UInt64, into buf: UnsafeMutableRawBufferPointer) -> Result<Int, StoreFailure> {
        guard let p = path(of: key) else { return .failure(Self.notFound) }
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(errno == ENOENT ? Self.notFound : Self.failure(errno, "cannot open the file")) }
        defer { close(fd) }
        var done = 0
        while done < buf.count {
            let n = pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(Self.failure(errno, "cannot read the file"))
            }
            if n == 0 { break }
            done += n
        }
        return .success(done)
    }

    func remove(_ key: String) -> StoreFailure? {
        guard let p = path(of: key) else { return Self.notFound }
        guard unlink(p) == 0 else { return errno == ENOENT ? Self.notFound : Self.failure(errno, "cannot delete the file") }
        return nil
    }

    /// Up to `limit` committed files with keys after `after` ("" = from the first), in key
    /// order: the sub-folders are visited in order from `after`'s, each read whole and
    /// sorted (a folder holds 1/256 of the files). `more` is true when the page filled up.
    /// Temp files of uploads in progress live in `tmp/` and are never listed.
    func list(after: String, limit: Int) -> Result<(files: [(key: String, size: UInt64, modifiedMs: Int64)], more: Bool), StoreFailure> {
        guard after.isEmpty || Self.isKey(after) else {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "list: \"after\" is not a key of this store"))
        }
        let hex = Array("0123456789abcdef")
        let first = after.isEmpty ? 0 : Int(after.prefix(2), radix: 16) ?? 0
        var out: [(key: String, size: UInt64, modifiedMs: Int64)] = []
        for shard in first..<256 {
            let name = String([hex[shard >> 4], hex[shard & 15]])
            let folder = dir + "/" + name
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: folder)
            } catch {
                if access(folder, F_OK) != 0 && errno == ENOENT { continue }
                return .failure(Self.failure(EIO, "cannot list \(folder)"))
            }
            for key in names.filter({ Self.isKey($0) && $0.hasPrefix(name) && $0 > after }).sorted() {
                var st = stat()
                guard stat(folder + "/" + key, &st) == 0 else { continue }  // removed meanwhile
                out.append((key, UInt64(st.st_size), Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000))
                if out.count == limit { return .success((out, true)) }
            }
        }
        return .success((out, false))
    }

    static let notFound = StoreFailure(PYLON_ERR_NOT_FOUND, "FILE_NOT_FOUND", "no stored file has this key")

    /// An I/O failure: a full disk (or quota) gets its own code, so the host can say so.
    static func failure(_ code: Int32, _ what: String) -> StoreFailure {
        if code == ENOSPC || code == EDQUOT {
            return StoreFailure(PYLON_ERR_IO, "DISK_FULL", "\(what): the disk is full; free space on the files folder's disk")
        }
        return StoreFailure(PYLON_ERR_IO, "FILE_IO", "\(what): \(String(cString: strerror(code)))")
    }
}

/// One upload's temp file. The first failure closes and deletes it at once (so a full disk
/// gets its space back without waiting for `abort`); later calls fail.
final class LocalUpload {
    let key: String
    private var fd: Int32
    private let tmpPath: String
    private let shardDir: String
    private let finalPath: String

    init(key: String, fd: Int32, tmpPath: String, shardDir: String, finalPath: String) {
        self.key = key
        self.fd = fd
        self.tmpPath = tmpPath
        self.shardDir = shardDir
        self.finalPath = finalPath
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> StoreFailure? {
        guard fd >= 0 else { return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "UPLOAD_FAILED", "this upload already failed; abort it") }
        if let refused = Self.reserveFailure(fd: fd, adding: bytes.count) { return discard(refused) }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return discard(LocalFileStore.failure(errno, "cannot write the upload"))
            }
            done += n
        }
        return nil
    }

    /// Uploads stop short of filling their disk: the last `min(1 GiB, 5%)` of it is kept for
    /// the database and everything else that must still write (an outside probe filled the
    /// disk as a guest; then every write failed, even the admin's delete that would have
    /// freed space). DISK_FULL (507) once a piece would leave less free.
    static func reserveFailure(fd: Int32, adding count: Int) -> StoreFailure? {
        var st = statvfs()
        guard fstatvfs(fd, &st) == 0 else { return nil }
        let unit = Int64(st.f_frsize)
        let free = Int64(st.f_bavail) * unit
        let reserve = min(Self.reserveCap, Int64(st.f_blocks) * unit / 20)
        guard free - Int64(count) < reserve else { return nil }
        return StoreFailure(PYLON_ERR_IO, "DISK_FULL",
                            "the files folder's disk is down to the space kept free for the database (\(reserve / 1024) KiB); free space there or move the files folder (PYLON_FILES_DIR)")
    }

    static let reserveCap: Int64 = 1 << 30

    func commit() -> StoreFailure? {
        guard fd >= 0 else { return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "UPLOAD_FAILED", "this upload already failed") }
        if fsync(fd) != 0 { return discard(LocalFileStore.failure(errno, "cannot sync the upload to disk")) }
        if mkdir(shardDir, 0o700) != 0 && errno != EEXIST { return discard(LocalFileStore.failure(errno, "cannot create \(shardDir)")) }
        if rename(tmpPath, finalPath) != 0 { return discard(LocalFileStore.failure(errno, "cannot move the upload into place")) }
        // Closed (its lock released) only once the file has left tmp/.
        close(fd)
        fd = -1
        // The rename is durable once the folder that now names the file is synced.
        let d = Glibc.open(shardDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            let synced = fsync(d) == 0
            let code = errno
            close(d)
            if !synced {
                unlink(finalPath)
                return LocalFileStore.failure(code, "cannot sync the files folder")
            }
        }
        return nil
    }

    func abort() { _ = discard(nil) }

    /// Closes and deletes the temp file; returns `failure`.
    private func discard(_ failure: StoreFailure?) -> StoreFailure? {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(tmpPath)
        return failure
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tmpPath)
        }
    }
}
