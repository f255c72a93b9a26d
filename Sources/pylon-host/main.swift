import ArgumentParser
import PylonCore
import PylonPlugins
import PylonData
#if canImport(CJemalloc)
import CJemalloc
#endif
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import PylonHost
import PylonHostSettings

// First, before any thread starts (setenv is not thread-safe): the host's secrets out of
// /proc/<pid>/environ, which its Bun workers (the same user) could read.
for warning in HostSettings.hideFromProcfs() {
    FileHandle.standardError.write(Data("pylon-host: warning: \(warning)\n".utf8))
}

/// `pylon-host [serve] | plugins | check | backup | restore` — thin CLI over the PylonHost library.
struct PylonHostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pylon-host",
        abstract: "A realtime backend host that loads its storage, auth, functions and cache as plugins.",
        version: PylonVersion.string,
        subcommands: [Serve.self, Plugins.self, Check.self, Backup.self, Restore.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the app (default).")

    @OptionGroup var store: StoreOptions
    @Option(help: "HTTP port (env PYLON_PORT, default 4321).") var port: Int?
    @Option(help: "Address to bind (default 127.0.0.1).") var host: String?
    @Flag(help: "Development mode (env PYLON_DEV_MODE=1).") var dev = false
    @Flag(help: "Do not open Pylon's extra WS (port+1) and SSE (port+2) listeners.") var noCompatPorts = false
    @Option(help: "Serve this folder's files at / beside the API (env PYLON_STATIC_DIR; default: the manifest's \"static\").") var `static`: String?

    func run() throws {
        #if canImport(CJemalloc)
        // Referenced so the linker keeps libjemalloc, which then serves every malloc.
        _ = mallctl
        #endif
        try reportingHostErrors { logger in
            var config = try store.config()
            if let port { config.port = port }
            if let host { config.bindHost = host }
            if dev { config.dev = true }
            if noCompatPorts { config.compatPorts = false }
            if let dir = `static` { config.staticSite = StaticSite(dir: dir, spa: config.staticSite?.spa ?? true) }
            let h = try Host.start(config, logger: logger)
            try blockOn { try await h.run() }
        }
    }
}

/// The options that find the app's store, shared by `serve`, `backup` and `restore`.
struct StoreOptions: ParsableArguments {
    @Option(help: "Folder of plugin .so files (env PYLON_PLUGINS_DIR).") var plugins: String?
    @Option(help: "Path to pylon.manifest.json.") var manifest: String = "pylon.manifest.json"
    @Option(help: "SQLite database file (env PYLON_DB_PATH).") var db: String?

    /// The environment's settings with these options applied.
    func config() throws -> HostConfig {
        var config = try HostConfig.fromEnvironment()
        if let plugins { config.pluginsDir = plugins }
        config.manifestPath = manifest
        if let db { config.dbPath = db }
        return config
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent backup of the app's database to a file, while hosts keep serving it.",
        discussion: "SQLite: SQLite's online backup API (the file is an SQLite database). Postgres: pg_dump --format=custom (pg_dump must be on PATH). D1: not supported (use wrangler d1 export).")

    @OptionGroup var store: StoreOptions
    @Option(help: "The backup file to write (replaced if it exists).") var to: String

    func run() throws {
        try reportingHostErrors { logger in print(try StoreBackup.backup(try store.config(), to: to, logger: logger)) }
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the app's database with a backup made by `pylon-host backup`; stop every host using it first.",
        discussion: "All or nothing: a missing, damaged or foreign file leaves the database unchanged. The restored database gets a new change-log epoch, so clients resync.")

    @OptionGroup var store: StoreOptions
    @Option(help: "The backup file to restore.") var from: String

    func run() throws {
        try reportingHostErrors { logger in print(try StoreBackup.restore(try store.config(), from: from, logger: logger)) }
    }
}

/// Sets up logging to stderr (level from LOG_LEVEL), runs `body` and turns a `HostError` into
/// one line on stderr and exit status 2.
func reportingHostErrors(_ body: (Logger) throws -> Void) throws {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        return h
    }
    do {
        try body(Logger(label: "pylon"))
    } catch let e as HostError {
        FileHandle.standardError.write(Data("pylon-host: error: \(e.code): \(e.message)\n".utf8))
        throw ExitCode(2)
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Inspect a plugins folder without serving.")

    @Option(help: "Folder of plugin .so files.") var plugins: String = "plugins"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let report = PluginInspector.report(directory: plugins)
        print(json ? report.json : report.text, terminator: json ? "\n" : "")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a manifest and exit.")

    @Option(help: "Path to pylon.manifest.json.") var manifest: String = "pylon.manifest.json"

    func run() throws {
        do {
            let m = try Host.loadManifest(manifest)
            print("\(manifest): ok (\(m.entities.count) entities, \(m.policies.count) policies)")
        } catch {
            FileHandle.standardError.write(Data("\(error.code): \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// Runs async work from this synchronous CLI and waits for it. The main thread is not an
/// event loop, so waiting here blocks nothing that serves requests.
func blockOn(_ work: @escaping @Sendable () async throws -> Void) throws {
    final class Outcome: @unchecked Sendable { var error: Error? }
    let outcome = Outcome()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { try await work() } catch { outcome.error = error }
        done.signal()
    }
    done.wait()
    if let e = outcome.error { throw e }
}

// Swift concurrency runs on NIO's event-loop threads, so request handlers do not hop
// between the concurrency pool and the event loops (fewer context switches per request).
// Must happen before any async code runs, hence top-level code instead of @main.
_ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
#if canImport(Glibc)
// glibc gives every thread that allocates its own malloc arena (up to 8 per core); with
// event loops, store threads and thousands of sockets the freed memory of one arena is
// not reusable by another and RSS balloons. Two arenas are plenty for this process.
// mallopt is declared in <malloc.h>, which the Glibc module does not import.
if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
    typealias MalloptFn = @convention(c) (Int32, Int32) -> Int32
    let M_ARENA_MAX: Int32 = -8
    _ = unsafeBitCast(sym, to: MalloptFn.self)(M_ARENA_MAX, 2)
}
#endif
PylonHostCommand.main()
