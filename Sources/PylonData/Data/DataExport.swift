import PylonCore
import PylonJSON

/// Whole-app data out and in (`/api/export`, `/api/import`) and one user's data out and
/// gone (GDPR: `/api/admin/users/:id/export` and `/purge`). All of it is admin-only; the
/// routes are in HTTP/AdminDataRoutes.swift.
extension DataService {
    /// Rows per page of an export, and per transaction of an import: a page is what the
    /// host holds in memory at once, however large the table.
    package static let exportPage: Int64 = 500
    package static let importBatch = 500

    /// What an import did to one entity.
    package struct ImportTally: Sendable {
        package var inserted = 0
        package var failed = 0
        /// The first few failures, for the answer (`maxImportErrors`).
        package var errors: [(index: Int, error: HostError)] = []
    }
    package static let maxImportErrors = 20

    /// Inserts `rows` into `entity`, `importBatch` rows per transaction, each row on its
    /// own savepoint so a bad row fails alone. A row keeps its `id` when it has one (so
    /// references between imported rows hold; Pylon gives every row a new id, which breaks
    /// them), else gets a new one; a row whose id is taken fails (`UNIQUE_VIOLATION`).
    /// Every insert is change-logged and published like any other write (Pylon's are not),
    /// so clients see imported rows. Policies do not apply: the caller is the admin.
    package func importRows(_ entity: String, _ rows: [JSONValue]) async throws -> ImportTally {
        let codec = try codec(entity)
        let guardian = WriteGuard(policies: policies, auth: .admin)
        var tally = ImportTally()
        var start = 0
        while start < rows.count {
            let batch = Array(rows[start..<min(start + Self.importBatch, rows.count)])
            let offset = start
            let results = try await store.write { tx in
                try batch.map { row -> HostError? in
                    let mark = try tx.savepoint("pylon_import")
                    do {
                        var data = try Self.object(row)
                        let id = try Self.importID(data.last { $0.0 == "id" }?.1)
                        data.removeAll { $0.0 == "id" }
                        _ = try Self.insert(tx, codec, data, id: id, guardian)
                        try tx.release("pylon_import")
                        return nil
                    } catch {
                        try tx.rollback(to: "pylon_import", mark)
                        return Self.hostError(error)
                    }
                }
            }
            for (i, failure) in results.enumerated() {
                guard let failure else { tally.inserted += 1; continue }
                tally.failed += 1
                if tally.errors.count < Self.maxImportErrors { tally.errors.append((offset + i, failure)) }
            }
            start += batch.count
        }
        return tally
    }

    /// A row's own id, kept on import when `RowID.isAddressable` (any id this host or Pylon
    /// makes is; an id with `/`, `%` or a space could be stored but not reached by
    /// `/api/entities/E/ID` behind every client and proxy); nil or absent: a new id.
    package static func importID(_ given: JSONValue?) throws(HostError) -> String {
        guard let given, !given.isNull else { return RowID.generate() }
        guard let s = given.stringValue, RowID.isAddressable(s) else {
            throw HostError.badRequest("INVALID_ID", "\"id\" must be a string of \(RowID.addressableRule), or absent for a new id")
        }
        return s
    }

    // MARK: One user's data (GDPR)

    /// Field names that say "this row belongs to that user", in Pylon's order.
    package static let ownerFieldNames = ["userId", "user_id", "authorId", "author_id", "ownerId", "owner_id", "createdBy", "created_by"]

    /// The field of `entity` that names a row's owner: the first of the entity's fields
    /// that has one of `ownerFieldNames` (as Pylon picks it); nil: rows have no owner.
    package func ownerField(_ entity: Entity) -> String? {
        entity.fields.first { Self.ownerFieldNames.contains($0.name) }?.name
    }

    /// Every row that belongs to `userID`: the user's own row (`auth.user.entity`) and the
    /// rows of every entity whose owner field is `userID`, entity by entity.
    package func userRows(_ userID: String) async throws -> [(entity: String, rows: [JSONValue])] {
        var out: [(String, [JSONValue])] = []
        for e in manifest.entities {
            var rows: [JSONValue] = []
            if e.name == manifest.auth.userEntity, let own = try await get(e.name, id: userID) { rows.append(own) }
            if let field = ownerField(e) {
                rows += try await query(e.name, filter: .object([(field, .string(userID))]))
                    .filter { row in !(e.name == manifest.auth.userEntity && row["id"]?.stringValue == userID) }
            }
            if !rows.isEmpty { out.append((e.name, rows)) }
        }
        return out
    }

    /// Deletes every row of every entity in one transaction, each a logged delete, for
    /// `POST /api/__test__/reset` (dev only; a test database is small).
    package func deleteAllRows() async throws -> [(entity: String, deleted: Int)] {
        var all: [(String, [JSONValue])] = []
        for e in manifest.entities { all.append((e.name, try await query(e.name, filter: nil))) }
        return try await deleteRows(all)
    }

    /// Deletes every row of `userRows` in one transaction, each a logged delete (clients see
    /// the rows go). Returns the count per entity.
    package func purgeUser(_ userID: String) async throws -> [(entity: String, deleted: Int)] {
        try await deleteRows(try await userRows(userID))
    }

    /// Deletes `rows` (by their ids) in one transaction, each a logged delete; a row that is
    /// already gone is skipped. Returns the count per entity.
    private func deleteRows(_ owned: [(entity: String, rows: [JSONValue])]) async throws -> [(entity: String, deleted: Int)] {
        let codecs = self.codecs
        let guardian = WriteGuard(policies: policies, auth: .admin)
        return try await store.write { tx in
            try owned.map { entity, rows in
                guard let codec = codecs[entity] else { throw HostError.entityNotFound(entity) }
                var deleted = 0
                for row in rows {
                    guard let id = row["id"]?.stringValue, try Self.fetch(tx, codec, id: id) != nil else { continue }
                    _ = try Self.delete(tx, codec, id: id, guardian)
                    deleted += 1
                }
                return (entity, deleted)
            }
        }
    }
}
