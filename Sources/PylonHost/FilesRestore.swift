import Crypto
import Foundation
import PylonCore
import PylonData
import PylonServices

/// Puts a backup's file bytes back through the files plugin, before the database is
/// restored. A plugin chooses its keys, so a file whose bytes the plugin no longer holds is
/// uploaded anew under a new key and its row renamed to it (`sql`, run by the store inside
/// the restore); a file still held under its key with the same bytes is kept as it is.
/// Every entry is checked (key alphabet, size within the archive, SHA-256) as it streams
/// by; on any failure, and when the database restore fails after it, every upload made is
/// removed again, so the live files and database stay as they were.
final class FilesRestore {
    let files: FilesService
    let path: String
    /// Keys uploaded by this restore (removed by `undo`).
    private(set) var created: [String] = []
    /// (archived key, new key) for the rows to rename.
    private(set) var renamed: [(String, String)] = []
    /// Every key the restored rows may name: the rest are dropped.
    private(set) var kept: [String] = []
    private(set) var bytes: UInt64 = 0

    init(files: FilesService, archive path: String) {
        self.files = files
        self.path = path
    }

    /// Reads the whole archive (paired with the database backup `database`), uploading
    /// what the plugin lacks. Throws FILES_ARCHIVE_INVALID for anything wrong with it.
    func run(database: String) throws(HostError) {
        let input = try FilesArchive.Input(path: path, what: "the files archive")
        defer { input.close() }
        guard try input.bytes(FilesArchive.magic.count) == FilesArchive.magic else {
            throw FilesArchive.invalid(path, "it does not start as a files archive of this version")
        }
        let pairedSize = try input.u64(), pairedSha = try input.bytes(32)
        let db = try FilesArchive.digest(ofFile: database)
        guard db.size == pairedSize, db.sha == pairedSha else {
            throw HostError(status: 400, code: "FILES_ARCHIVE_MISMATCH",
                            message: "\(path) was written with another database backup than \(database); nothing was restored and the database and files are unchanged; restore the pair written by one `pylon-host backup`")
        }
        var index = SHA256()
        var seen = Set<String>()
        while true {
            let tag = try input.bytes(1)[0]
            if tag == UInt8(ascii: "E") { break }
            guard tag == UInt8(ascii: "F") else { throw FilesArchive.invalid(path, "an unknown entry mark at byte \(input.offset - 1)") }
            let keyLen = Int(try input.bytes(1)[0])
            let key = try input.bytes(keyLen)
            guard FilesArchive.isKey(key) else { throw FilesArchive.invalid(path, "an entry names \"\(String(decoding: key.prefix(64), as: UTF8.self))\", which is not a file key") }
            let head = FilesArchive.Head(key: String(decoding: key, as: UTF8.self), size: try input.u64(), sha: try input.bytes(32))
            guard head.size <= input.left else { throw FilesArchive.invalid(path, "an entry of \(head.size) bytes runs past its end (\(input.left) left): truncated or oversized") }
            guard seen.insert(head.key).inserted else { throw FilesArchive.invalid(path, "the key \(head.key) appears twice") }
            index.update(data: head.encoded)
            try restore(head, from: input)
        }
        let count = try input.u64(), digest = try input.bytes(32)
        guard count == UInt64(seen.count), digest == Array(index.finalize()) else {
            throw FilesArchive.invalid(path, "its list of entries does not match its end mark: damaged")
        }
        guard input.left == 0 else { throw FilesArchive.invalid(path, "\(input.left) bytes follow its end mark") }
    }

    /// One entry: kept when the plugin holds the same bytes under its key, else uploaded.
    private func restore(_ head: FilesArchive.Head, from input: FilesArchive.Input) throws(HostError) {
        let bad = FilesArchive.invalid(path, "the bytes of \(head.key) do not match their SHA-256: damaged")
        if try holds(head) {
            var hash = SHA256()
            try input.stream(head.size) { hash.update(bufferPointer: $0) }
            guard Array(hash.finalize()) == head.sha else { throw bad }
            kept.append(head.key)
            return
        }
        let upload = try call { try files.beginNow() }
        created.append(upload.key)
        var hash = SHA256()
        do throws(HostError) {
            try input.stream(head.size) { piece in
                hash.update(bufferPointer: piece)
                try files.writeNow(upload, piece)
            }
            guard Array(hash.finalize()) == head.sha else { throw bad }
            try call { try files.commitNow(upload) }
        } catch {
            files.abortNow(upload)
            throw error
        }
        renamed.append((head.key, upload.key))
        kept.append(upload.key)
        bytes += head.size
    }

    /// Whether the plugin holds `head.key` with exactly its bytes (read and hashed).
    private func holds(_ head: FilesArchive.Head) throws(HostError) -> Bool {
        guard let size = try call({ try files.sizeNow(of: head.key) }), size == Int64(head.size) else { return false }
        var hash = SHA256()
        do {
            try FilesBackup.readAll(head.key, size: size, files) { hash.update(bufferPointer: $0) }
        } catch {
            return false
        }
        return Array(hash.finalize()) == head.sha
    }

    /// The SQL the store runs on the restored database: its files table (an older backup
    /// may have none), the renamed keys, and no row whose bytes the archive lacked (a file
    /// deleted while the backup ran), each with a delete entry in the change log so that
    /// clients resyncing from the restored log see it gone.
    func sql(_ dialect: SQLDialect) -> [String] {
        let table = dialect.quote(SystemTables.files.name), column = dialect.quote("storage_key")
        // Keys passed `FilesArchive.isKey` or came from the plugin's `begin` (the same
        // alphabet): safe inside quotes.
        let renames = renamed.map { "UPDATE \(table) SET \(column) = '\($0.1)' WHERE \(column) = '\($0.0)'" }
        let lacking = kept.isEmpty ? "" : " WHERE \(column) NOT IN (\(kept.map { "'\($0)'" }.joined(separator: ", ")))"
        let changes = "_pylon_changes", now = Int64(Date().timeIntervalSince1970)
        let logged = """
            INSERT INTO \(changes) (seq, entity, row_id, kind, data, before, ts) \
            SELECT (SELECT COALESCE(MAX(seq), 0) FROM \(changes)) + ROW_NUMBER() OVER (ORDER BY id), \
            '\(SystemTables.files.name)', id, 'delete', NULL, NULL, \(now) FROM \(table)\(lacking)
            """
        return FileRecords.createSQL(dialect) + renames + [logged, "DELETE FROM \(table)\(lacking)"]
    }

    /// Removes every upload this restore made (after a failure).
    func undo() {
        for key in created { try? files.removeNow(key) }
        created = []
    }

    private func call<T>(_ body: () throws -> T) throws(HostError) -> T {
        do { return try body() } catch let e as HostError {
            throw HostError(status: e.status, code: e.code, message: "\(e.message); nothing was restored and the database and files are unchanged")
        } catch {
            throw HostError(status: 500, code: "RESTORE_FAILED", message: "\(error)")
        }
    }
}
