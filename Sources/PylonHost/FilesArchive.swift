import Crypto
import Foundation
import PylonCore
import PylonPluginABI

#if canImport(Glibc)
import Glibc
#endif

/// The file bytes of a backup: `FILE.files` beside the database backup `FILE`. One file,
/// written and read front to back in pieces (a file's bytes are never held whole):
///
///     "PYLONFILES" 0x00 0x01                       magic and version
///     u64 size, 32-byte SHA-256                    of the database backup FILE: the pair
///     then per file:  'F', u8 key length (1...128), key (A-Z a-z 0-9 - _),
///                     u64 size, 32-byte SHA-256 (the row's), the bytes
///     then once:      'E', u64 count, 32-byte SHA-256 of every entry's head
///
/// Integers are big-endian. Each file's bytes are checked against their SHA-256 (the file
/// row's, which was checked while copying); the end mark's count and digest cover the list
/// of entries, so a missing, added or reordered entry is caught, and nothing may follow it.
enum FilesArchive {
    static let magic = Array("PYLONFILES".utf8) + [0, 1]
    /// The piece size of every copy (the bytes in memory at once per file).
    static let piece = 1 << 20

    static func path(for backup: String) -> String { backup + ".files" }

    /// A refusal of the archive at `path`: always the same code, with what was wrong.
    static func invalid(_ path: String, _ what: String) -> HostError {
        HostError(status: 400, code: "FILES_ARCHIVE_INVALID",
                  message: "\(path) is not a usable files archive (\(what)); nothing was restored and the database and files are unchanged; use the .files archive written with this backup")
    }

    /// Whether `key` may name a file: the ABI's alphabet and length, so a hostile archive
    /// can name nothing but a key (no '/', no '..').
    static func isKey(_ key: [UInt8]) -> Bool {
        (1...Int(PYLON_FILES_KEY_MAX)).contains(key.count) && key.allSatisfy { c in
            (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 45 || c == 95
        }
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    /// The size and SHA-256 of the file at `path`, read in pieces.
    static func digest(ofFile path: String) throws(HostError) -> (size: UInt64, sha: [UInt8]) {
        let input = try Input(path: path, what: "the database backup")
        defer { input.close() }
        var hash = SHA256()
        try input.stream(input.size) { hash.update(bufferPointer: $0) }
        return (input.size, Array(hash.finalize()))
    }

    /// Writes to `<path>.partial-<pid>`; `finish` syncs it and moves it to `path`, `discard`
    /// removes it. Threads: one at a time.
    final class Output {
        let path: String
        let temp: String
        private var fd: Int32
        private(set) var offset: UInt64 = 0

        init(path: String) throws(HostError) {
            self.path = path
            temp = "\(path).partial-\(getpid())"
            fd = Glibc.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw Self.failure("cannot create \(temp)") }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(HostError) {
            if let e = put(bytes) { throw e }
        }

        func write(_ bytes: [UInt8]) throws(HostError) {
            if let e = bytes.withUnsafeBytes({ put($0) }) { throw e }
        }

        private func put(_ bytes: UnsafeRawBufferPointer) -> HostError? {
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return Self.failure("cannot write \(temp)")
                }
                done += n
            }
            offset += UInt64(bytes.count)
            return nil
        }

        /// Cuts the file back to `offset` (a file removed while it was being copied).
        func truncate(to offset: UInt64) throws(HostError) {
            guard ftruncate(fd, off_t(offset)) == 0, lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw Self.failure("cannot truncate \(temp)") }
            self.offset = offset
        }

        func finish() throws(HostError) {
            guard fsync(fd) == 0 else { throw Self.failure("cannot sync \(temp)") }
            Glibc.close(fd)
            fd = -1
            guard rename(temp, path) == 0 else { throw Self.failure("cannot move \(temp) to \(path)") }
        }

        func discard() {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
            unlink(temp)
        }

        deinit { discard() }

        static func failure(_ what: String) -> HostError {
            let code = errno
            return HostError(status: 500, code: code == ENOSPC ? "DISK_FULL" : "BACKUP_FAILED",
                             message: "\(what): \(String(cString: strerror(code))); no backup was written")
        }
    }

    /// Reads a file front to back; every read is bounded by what is left of it, so no
    /// size field can make the reader allocate or wait for more than the file holds.
    final class Input {
        let path: String
        let size: UInt64
        private let fd: Int32
        private(set) var offset: UInt64 = 0
        var left: UInt64 { size - offset }

        init(path: String, what: String) throws(HostError) {
            self.path = path
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            var st = stat()
            guard fd >= 0, fstat(fd, &st) == 0 else {
                throw HostError(status: 404, code: "FILES_ARCHIVE_UNREADABLE", message: "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            size = UInt64(st.st_size)
        }

        func close() { Glibc.close(fd) }

        /// Exactly `count` bytes (small: heads and marks), or an invalid-archive error.
        func bytes(_ count: Int) throws(HostError) -> [UInt8] {
            guard UInt64(count) <= left else { throw FilesArchive.invalid(path, "it ends early, at byte \(offset): truncated?") }
            var out = [UInt8](repeating: 0, count: count)
            if let e = out.withUnsafeMutableBytes({ fill($0) }) { throw e }
            return out
        }

        func u64() throws(HostError) -> UInt64 { try bytes(8).reduce(0) { $0 << 8 | UInt64($1) } }

        /// Hands the next `count` bytes to `body` in pieces.
        func stream(_ count: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws(HostError) {
            guard count <= left else { throw FilesArchive.invalid(path, "an entry of \(count) bytes runs past its end (\(left) left): truncated or oversized") }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FilesArchive.piece, alignment: 16)
            defer { buffer.deallocate() }
            var remaining = count
            while remaining > 0 {
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(Int(min(remaining, UInt64(buffer.count)))))
                if let e = fill(part) { throw e }
                do { try body(UnsafeRawBufferPointer(part)) } catch let e as HostError { throw e } catch {
                    throw HostError(status: 500, code: "RESTORE_FAILED", message: "\(error)")
                }
                remaining -= UInt64(part.count)
            }
        }

        /// Fills `out` from the current offset; an invalid-archive error when it cannot.
        private func fill(_ out: UnsafeMutableRawBufferPointer) -> HostError? {
            var done = 0
            while done < out.count {
                let n = pread(fd, out.baseAddress! + done, out.count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return FilesArchive.invalid(path, "it could not be read past byte \(offset + UInt64(done))") }
                done += n
            }
            offset += UInt64(out.count)
            return nil
        }
    }

    /// One entry's head, as written and as read.
    struct Head {
        var key: String
        var size: UInt64
        var sha: [UInt8]

        var encoded: [UInt8] {
            let k = Array(key.utf8)
            return [UInt8(ascii: "F"), UInt8(k.count)] + k + FilesArchive.be(size) + sha
        }
    }

    static func be(_ v: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: v >> (UInt64($0) * 8)) } }
}
