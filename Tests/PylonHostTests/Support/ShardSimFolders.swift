import Foundation

/// Plugins folders for shard suites beyond `ShardSimsBuild`'s: that folder's sims and
/// SQLite store, plus links to more plugins (the Postgres store, another sim), each made
/// once per test process under its own name.
actor ShardSimFolders {
    static let shared = ShardSimFolders()
    private var made: [String: Task<String, Error>] = [:]

    /// `ShardSimsBuild`'s folder plus the files `extra` returns (file name → path to link).
    func folder(_ name: String, extra: @escaping @Sendable () async throws -> [String: String]) async throws -> String {
        if let task = made[name] { return try await task.value }
        let task = Task { () throws -> String in
            let base = try await ShardSimsBuild.shared.pluginsDir()
            let dir = base + "-" + name
            let fm = FileManager.default
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for file in try fm.contentsOfDirectory(atPath: base) {
                try fm.createSymbolicLink(atPath: dir + "/" + file, withDestinationPath: base + "/" + file)
            }
            for (file, path) in try await extra() { try fm.createSymbolicLink(atPath: dir + "/" + file, withDestinationPath: path) }
            return dir
        }
        made[name] = task
        return try await task.value
    }

    /// The shard sims on a fresh database of the test Postgres server.
    static let postgres = TestStore(
        name: "postgres+sims",
        pluginsDir: { try await ShardSimFolders.shared.folder("pg") { ["libPylonStorePostgres.so": TestPaths.pluginsDir + "/libPylonStorePostgres.so"] } },
        provision: TestStore.postgres.provision)
}

extension ShardSimFolders {
    /// The shard sims and `examples/shard-tag` (the Rust sim, built by its own Makefile with
    /// plain rustc) beside the SQLite store.
    static let withTag = TestStore(
        name: "sqlite+sims+tag",
        pluginsDir: {
            try await ShardSimFolders.shared.folder("tag") {
                let out = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-shard-tag-\(UUID().uuidString)").path
                let dir = TestPaths.packageRoot.appendingPathComponent("examples/shard-tag").path
                let make = try await TestCommand.run("/usr/bin/env", ["make", "-C", dir, "BUILD_DIR=\(out)"], timeout: 300)
                guard make.status == 0 else { throw TestSetupError(description: "make in \(dir) failed:\n\(make.stdout)\n\(make.stderr)") }
                return ["libpylon_shard_tag.so": out + "/libpylon_shard_tag.so"]
            }
        },
        provision: ShardSimsBuild.store.provision)
}

extension ShardSimFolders {
    /// The shard sims with the function runtime and the shard WebSocket transport beside the
    /// SQLite store: shards made by functions, reached on every path.
    static let withTransportAndFunctions = linking("sqlite+sims+shardws+functions", ["libPylonShardWS.so", "libPylonFnBun.so"],
                                                   provision: ShardSimsBuild.store.provision)

    /// The shard sims with the function runtime on a fresh database of the test Postgres server.
    static let postgresWithFunctions = linking("postgres+sims+functions", ["libPylonStorePostgres.so", "libPylonFnBun.so"],
                                               provision: TestStore.postgres.provision)

    /// A store named `name` whose folder is the sims' plus `plugins`, linked from `plugins/`.
    static func linking(_ name: String, _ plugins: [String],
                                provision: @escaping @Sendable (URL, String) async throws -> TestStoreBackend) -> TestStore {
        TestStore(name: name,
                  pluginsDir: {
                      try await ShardSimFolders.shared.folder(name) {
                          Dictionary(uniqueKeysWithValues: plugins.map { ($0, TestPaths.pluginsDir + "/" + $0) })
                      }
                  },
                  provision: provision)
    }
}
