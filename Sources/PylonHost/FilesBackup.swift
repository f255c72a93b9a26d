import Crypto
import Foundation
import PylonCore
import PylonData
import PylonServices

/// The file bytes of `pylon-host backup` / `restore`, copied through the files plugin's
/// ABI (stat, read; begin, write, commit), never through its folder, so any files backend
/// works alike. See `FilesArchive` for the format.
///
/// Consistency with the database backup: the database is snapshotted first; then the file
/// rows are read and the bytes they name copied (a key's bytes never change, so bytes read
/// later are the bytes the row meant). A file deleted while the backup ran may be in the
/// snapshot but its bytes gone: it is left out of the archive, and `restore` drops every
/// row whose bytes the archive lacks, so a restored row always has its bytes.
enum FilesBackup {
    /// One row of `_pylon_files`, as the backup needs it.
    struct Row {
        let id: String
        let key: String
        let size: Int64
        let sha: String
    }

    /// What the archive holds.
    struct Summary {
        var files = 0
        var bytes: UInt64 = 0
        /// Rows whose bytes were gone when copied and that are deleted now (deleted while
        /// the backup ran).
        var deleted = 0
        /// Rows whose bytes were gone though the rows are still there: bytes lost before
        /// the backup (such a file answers 404).
        var missing: [String] = []

        /// The operator's line, after the database's.
        func line(_ archive: String) -> String {
            var out = "; \(files) file(s), \(bytes) bytes, written to \(archive)"
            if deleted > 0 { out += "; \(deleted) file(s) deleted while it ran are not in it (a restore leaves their rows out)" }
            if !missing.isEmpty {
                out += "; \(missing.count) file row(s) whose bytes the files plugin does not have are not in it (a restore leaves them out): \(missing.prefix(10).joined(separator: ", "))"
            }
            return out
        }
    }

    /// Every file row of the live database (none when it has no files table yet).
    static func rows(_ conn: StoreConnection, _ dialect: SQLDialect) throws(HostError) -> [Row] {
        let table = SystemTables.files.name
        let exists = dialect.name == "postgres"
            ? "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '\(table)' AND schemaname = current_schema()"
            : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '\(table)'"
        do throws(StoreError) {
            guard (try conn.execute(exists).rows.first?.first?.intValue ?? 0) > 0 else { return [] }
            let sql = "SELECT id, storage_key, size, sha256 FROM \(dialect.quote(table)) ORDER BY storage_key"
            return try conn.execute(sql).rows.compactMap { r in
                guard r.count >= 4, let id = r[0].textValue, let key = r[1].textValue, let size = r[2].intValue, let sha = r[3].textValue else { return nil }
                return Row(id: id, key: key, size: size, sha: sha)
            }
        } catch {
            throw HostError(status: 500, code: "BACKUP_FAILED", message: "cannot read the file rows: \(error.message); no backup was written")
        }
    }

    /// Writes the archive of the bytes of every file row `conn` reads to
    /// `FilesArchive.path(for: database)`, paired with the database backup file `database`.
    static func write(_ conn: StoreConnection, _ dialect: SQLDialect, _ files: FilesService, database: String) throws(HostError) -> Summary {
        let all = try Self.rows(conn, dialect)
        let out = try FilesArchive.Output(path: FilesArchive.path(for: database))
        defer { out.discard() }
        let db = try FilesArchive.digest(ofFile: database)
        try out.write(FilesArchive.magic + FilesArchive.be(db.size) + db.sha)
        var summary = Summary()
        var index = SHA256()
        var gone: [Row] = []
        for row in all {
            guard let head = try copy(row, files, into: out) else {
                gone.append(row)
                continue
            }
            index.update(data: head.encoded)
            summary.files += 1
            summary.bytes += head.size
        }
        try out.write([UInt8(ascii: "E")] + FilesArchive.be(UInt64(summary.files)) + Array(index.finalize()))
        try out.finish()
        let live = try ids(of: gone, conn, dialect)
        summary.missing = gone.filter { live.contains($0.id) }.map(\.id)
        summary.deleted = gone.count - summary.missing.count
        return summary
    }

    /// Which of `rows` are still in the live database.
    private static func ids(of rows: [Row], _ conn: StoreConnection, _ dialect: SQLDialect) throws(HostError) -> Set<String> {
        var out = Set<String>()
        var rest = rows[...]
        while !rest.isEmpty {
            let batch = rest.prefix(500)
            rest = rest.dropFirst(500)
            let sql = "SELECT id FROM \(dialect.quote(SystemTables.files.name)) WHERE id IN (\((1...batch.count).map(dialect.placeholder).joined(separator: ", ")))"
            do throws(StoreError) {
                for r in try conn.execute(sql, batch.map { .text($0.id) }).rows { if let id = r.first?.textValue { out.insert(id) } }
            } catch {
                throw HostError(status: 500, code: "BACKUP_FAILED", message: "cannot read the file rows: \(error.message); no backup was written")
            }
        }
        return out
    }

    /// Copies one row's bytes as an entry; nil (the entry cut off again) when the plugin no
    /// longer has them. Bytes that differ from the row's size or SHA-256 fail the backup.
    private static func copy(_ row: Row, _ files: FilesService, into out: FilesArchive.Output) throws(HostError) -> FilesArchive.Head? {
        guard let sha = hexBytes(row.sha), FilesArchive.isKey(Array(row.key.utf8)) else {
            throw mismatch(row, "its row has no valid storage key or SHA-256")
        }
        let start = out.offset
        do {
            guard let size = try files.sizeNow(of: row.key) else { return nil }
            guard size == row.size else { throw mismatch(row, "the files plugin holds \(size) bytes, its row says \(row.size)") }
            let head = FilesArchive.Head(key: row.key, size: UInt64(size), sha: sha)
            try out.write(head.encoded)
            var hash = SHA256()
            try readAll(row.key, size: size, files) { piece throws(HostError) in
                hash.update(bufferPointer: piece)
                try out.write(piece)
            }
            guard Array(hash.finalize()) == sha else { throw mismatch(row, "its bytes do not match the SHA-256 in its row") }
            return head
        } catch let e as HostError where e.code == "FILE_NOT_FOUND" {
            try out.truncate(to: start)
            return nil
        } catch let e as HostError {
            throw e
        } catch {
            throw HostError(status: 500, code: "BACKUP_FAILED", message: "\(error)")
        }
    }

    /// Reads `size` bytes of `key` in pieces; FILE_NOT_FOUND when they end early.
    static func readAll(_ key: String, size: Int64, _ files: FilesService, _ body: (UnsafeRawBufferPointer) throws(HostError) -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FilesArchive.piece, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let want = Int(min(Int64(buffer.count), size - offset))
            let got = try files.readNow(key, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(want)))
            guard got > 0 else { throw HostError(status: 404, code: "FILE_NOT_FOUND", message: "the file ended early") }
            try body(UnsafeRawBufferPointer(rebasing: buffer.prefix(got)))
            offset += Int64(got)
        }
    }

    static func mismatch(_ row: Row, _ what: String) -> HostError {
        HostError(status: 500, code: "FILES_CHECKSUM_MISMATCH",
                  message: "file \(row.id): \(what); the stored file is damaged, so no backup was written: delete the file (DELETE /api/files/\(row.id)) or put its bytes back, then back up again")
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count == 64 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: 64, by: 2) {
            guard let b = UInt8(String(decoding: u[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }
}
