import PylonCore
import PylonJSON

/// Per-user limits on stored files (`PYLON_FILES_MAX_BYTES_PER_USER`,
/// `PYLON_FILES_MAX_FILES_PER_USER`; 0 is unlimited). Checked by `FileRecords.insert` in the
/// write transaction that records the upload, against the sum of the owner's rows, so
/// concurrent uploads cannot pass the limit together (the writer is one per SQLite database;
/// on PostgreSQL every host's write transaction holds the shared write lock). Files with no
/// owner (uploaded with the admin token) are exempt.
package struct FileQuota: Sendable {
    package let maxBytes: Int64
    package let maxFiles: Int64

    package init(maxBytes: Int64, maxFiles: Int64) {
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
    }

    package var unlimited: Bool { maxBytes <= 0 && maxFiles <= 0 }

    /// What an owner stores now.
    package struct Usage: Sendable {
        package var files: Int64
        package var bytes: Int64
    }

    /// Bytes the owner may still add (nil: no byte limit).
    package func remainingBytes(_ u: Usage) -> Int64? { maxBytes > 0 ? max(0, maxBytes - u.bytes) : nil }

    /// Throws FILE_QUOTA_EXCEEDED when one more file of `size` bytes would pass a limit:
    /// 403 for the number of files, 413 for the bytes; the message says the limit.
    package func check(_ u: Usage, adding size: Int64) throws(HostError) {
        if maxFiles > 0 && u.files + 1 > maxFiles {
            throw HostError(status: 403, code: "FILE_QUOTA_EXCEEDED",
                            message: "you have \(u.files) files; the limit is \(maxFiles) per user (PYLON_FILES_MAX_FILES_PER_USER): delete files to upload more")
        }
        if maxBytes > 0 && u.bytes + size > maxBytes {
            throw HostError(status: 413, code: "FILE_QUOTA_EXCEEDED",
                            message: "your files use \(u.bytes) bytes and this one has \(size); the limit is \(maxBytes) bytes per user (PYLON_FILES_MAX_BYTES_PER_USER): delete files to upload more")
        }
    }

    /// `GET /api/files/usage`'s answer: use and limits (null: unlimited).
    package func json(_ u: Usage) -> JSONValue {
        .object([("files", .int(u.files)), ("bytes", .int(u.bytes)),
                 ("max_files", maxFiles > 0 ? .int(maxFiles) : .null), ("max_bytes", maxBytes > 0 ? .int(maxBytes) : .null)])
    }
}
