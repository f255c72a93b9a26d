// swift-tools-version:6.0
import PackageDescription

// Layout: see ../shared/DESIGN.md §2. Each directory under Plugins/ is one dynamic
// library product named `Pylon<Folder>`, built to `lib<Name>.so` and copied to plugins/.

// pylon-host links jemalloc (libjemalloc-dev), which then serves every allocation in the
// process, plugins included: with many threads handing buffers to each other glibc's
// malloc spends a large share of the host's CPU on arena locks (bench/RESULTS.md).
// PYLON_SYSTEM_MALLOC=1 at build time builds without it (glibc's malloc).
let jemalloc = Context.environment["PYLON_SYSTEM_MALLOC"] != "1"

// A plugin exports one symbol, `pylon_plugin_entry` (DESIGN.md §3 rule 1). Without this the
// public Swift symbols of the modules linked into it (PylonPluginKit, PylonJSON) would be
// exported too, and each plugin carries its own copy of them.
let pluginExports: [LinkerSetting] = [
    .unsafeFlags(["-Xlinker", "--version-script=\(Context.packageDirectory)/Plugins/exports.map"], .when(platforms: [.linux])),
]
let package = Package(
    name: "pylon-swift",
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .executable(name: "pylon-host", targets: ["pylon-host"]),
        .library(name: "PylonHost", targets: ["PylonHost"]),
        // The Swift client (HTTP and WebSocket only; no host target), and its example.
        .library(name: "PylonClient", targets: ["PylonClient"]),
        .executable(name: "pylon-todo-cli", targets: ["pylon-todo-cli"]),
        .executable(name: "pylon-client-bench", targets: ["pylon-client-bench"]),
        .library(name: "PylonStoreSQLite", type: .dynamic, targets: ["PylonStoreSQLite"]),
        .library(name: "PylonStorePostgres", type: .dynamic, targets: ["PylonStorePostgres"]),
        .library(name: "PylonStoreD1", type: .dynamic, targets: ["PylonStoreD1"]),
        .library(name: "PylonFnBun", type: .dynamic, targets: ["PylonFnBun"]),
        .library(name: "PylonCacheRESP", type: .dynamic, targets: ["PylonCacheRESP"]),
        .library(name: "PylonAuthOAuth", type: .dynamic, targets: ["PylonAuthOAuth"]),
        .library(name: "PylonFilesLocal", type: .dynamic, targets: ["PylonFilesLocal"]),
        .library(name: "PylonAuthMagicCode", type: .dynamic, targets: ["PylonAuthMagicCode"]),
        .library(name: "PylonShardWS", type: .dynamic, targets: ["PylonShardWS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.1.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Metrics: the swift-metrics API with swift-prometheus as its backend (Core/Metrics.swift).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        // HS256 session JWTs (POST /api/auth/jwt, and Bearer JWTs), and later OIDC id_tokens.
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
    ],
    targets: [
        // THE contract: pure C99 header, no Swift.
        .target(name: "PylonPluginABI", path: "Sources/PylonPluginABI"),
        // The one JSON reader and writer, for the host and every Swift plugin (linked
        // statically into each plugin, like PylonPluginKit; see `pluginExports`).
        .target(name: "PylonJSON", path: "Sources/PylonJSON"),
        // Optional Swift helpers for plugins written in Swift (linked statically into each).
        .target(name: "PylonPluginKit", dependencies: ["PylonPluginABI", "PylonJSON"], path: "Sources/PylonPluginKit"),
        // RFC 6455 rules for client frames, shared by the host's WebSocket listeners and the
        // shard WebSocket plugin (linked statically into it, like PylonPluginKit).
        .target(name: "PylonWebSocket", dependencies: [.product(name: "NIOCore", package: "swift-nio"),
                                                      .product(name: "NIOWebSocket", package: "swift-nio")],
                path: "Sources/PylonWebSocket"),
        // Which environment variables are the host's own settings (secrets among them): FnBun
        // keeps them from its workers, pylon-host hides them from /proc/<pid>/environ. Linked
        // statically into both, like PylonJSON.
        .target(name: "PylonHostSettings", path: "Sources/PylonHostSettings"),
        // Outbound HTTP through libcurl, for the host (CAPTCHA, breached passwords) and plugins.
        .target(name: "PylonCurl", dependencies: ["CCurl"], path: "Sources/PylonCurl"),
        .systemLibrary(
            name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(
            name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "CJemalloc", path: "Sources/CJemalloc", pkgConfig: "jemalloc",
            providers: [.apt(["libjemalloc-dev"])]),
        .systemLibrary(
            name: "CArgon2", path: "Sources/CArgon2", pkgConfig: "libargon2",
            providers: [.apt(["libargon2-dev"])]),
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        // The host, in layers; each target may use only those above it in this list, so the
        // compiler keeps the architecture (README "Layout"). Anything a lower layer shares
        // with a higher one is `package`; `public` is the embedder's API (PylonHost).
        //
        // Core: the model, manifest, schema SQL, policies, config, metrics, errors. No threads,
        // no I/O but the files it is told to read.
        .target(
            name: "PylonCore",
            dependencies: [
                "PylonPluginABI", "PylonJSON",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/PylonCore"),
        // Plugins: the C boundary — loading, handshake, the host table, capability registry.
        .target(
            name: "PylonPlugins",
            dependencies: [
                "PylonCore", "PylonPluginABI", "PylonJSON",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/PylonPlugins"),
        // Data: store threads, migrations, the change log and realtime hub, sessions and
        // password accounts, the data service (CRUD, queries, policies applied).
        .target(
            name: "PylonData",
            dependencies: [
                "PylonCore", "PylonPluginABI", "PylonJSON", "CArgon2",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/PylonData"),
        // Services: plugin-backed services on the data plane (functions, cache).
        .target(
            name: "PylonServices",
            dependencies: [
                "PylonData", "PylonPlugins", "PylonCore", "PylonPluginABI", "PylonJSON", "PylonCurl", "CCurl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                // Files: the upload's SHA-256 and signed links; chunks as ByteBuffers.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/PylonServices"),
        // Edge: HTTP, WebSocket and SSE — the front, routes, middleware, limits.
        .target(
            name: "PylonEdge",
            dependencies: [
                "PylonServices", "PylonData", "PylonPlugins", "PylonCore", "PylonPluginABI", "PylonJSON", "PylonWebSocket",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            path: "Sources/PylonEdge"),
        // Host: the wiring (start in steps, run, stop) and backup/restore; the library an
        // embedder imports.
        .target(
            name: "PylonHost",
            dependencies: [
                "PylonEdge", "PylonServices", "PylonData", "PylonPlugins", "PylonCore", "PylonPluginABI", "PylonJSON",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/PylonHost"),
        .executableTarget(
            name: "pylon-host",
            dependencies: [
                "PylonHost", "PylonData", "PylonPlugins", "PylonCore", "PylonHostSettings",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ] + (jemalloc ? ["CJemalloc"] : []),
            path: "Sources/pylon-host"),
        .target(
            name: "PylonStoreSQLite",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CSQLite"],
            path: "Plugins/StoreSQLite",
            linkerSettings: pluginExports),
        .target(
            name: "PylonStorePostgres",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CLibPQ"],
            path: "Plugins/StorePostgres",
            linkerSettings: pluginExports),
        .target(
            name: "PylonStoreD1",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CCurl"],
            path: "Plugins/StoreD1",
            linkerSettings: pluginExports),
        // The Bun function runtime; runtime/*.ts is embedded by scripts/gen-fn-runtime.py.
        .target(
            name: "PylonFnBun",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "PylonHostSettings"],
            path: "Plugins/FnBun",
            exclude: ["runtime"],
            linkerSettings: pluginExports),
        .target(name: "CCacheRESPShim", path: "Plugins/CacheRESP/Shim"),
        .target(
            name: "PylonCacheRESP",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CCacheRESPShim"],
            path: "Plugins/CacheRESP",
            exclude: ["Shim"],
            linkerSettings: pluginExports),
        // OAuth 2 / OpenID Connect providers (libcurl for HTTP, jwt-kit for id_tokens).
        .target(
            name: "PylonAuthOAuth",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CCurl", "PylonCurl", .product(name: "JWTKit", package: "jwt-kit")],
            path: "Plugins/AuthOAuth",
            linkerSettings: pluginExports),
        // File bytes on local disk (`pylon.files/1`), the default files plugin.
        .target(
            name: "PylonFilesLocal",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON"],
            path: "Plugins/FilesLocal",
            linkerSettings: pluginExports),
        // One-time email codes and links (pylon.auth.code/1): secrets hashed with swift-crypto,
        // mail through libcurl (SMTP and HTTP email APIs).
        .target(
            name: "PylonAuthMagicCode",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "CCurl", "PylonCurl",
                           .product(name: "Crypto", package: "swift-crypto")],
            path: "Plugins/AuthMagicCode",
            linkerSettings: pluginExports),
        // The shard WebSocket (pylon.shard.transport/1): its own copy of SwiftNIO and its
        // WebSocket codec, every symbol of it local to the library (`pluginExports`).
        .target(
            name: "PylonShardWS",
            dependencies: ["PylonPluginABI", "PylonPluginKit", "PylonJSON", "PylonWebSocket",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOWebSocket", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            path: "Plugins/ShardWS",
            linkerSettings: pluginExports),
        // Free loopback ports for the servers tests start, shared by the test targets.
        .target(name: "PylonTestPorts", path: "Tests/Shared/PylonTestPorts"),
        .testTarget(
            name: "PylonHostTests",
            dependencies: ["PylonHost", "PylonEdge", "PylonServices", "PylonData", "PylonPlugins", "PylonCore",
                           "PylonPluginABI", "PylonJSON", "PylonTestPorts",
                           // HTTPFrontTests: the front's pipeline on an EmbeddedChannel.
                           .product(name: "NIOEmbedded", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras")],
            path: "Tests/PylonHostTests"),
        // Unit tests of StoreD1's pure parts (statement kinds, response mapping, config).
        .testTarget(
            name: "PylonStoreD1Tests",
            dependencies: ["PylonStoreD1", "PylonPluginABI", "PylonPluginKit", "PylonJSON"],
            path: "Tests/PylonStoreD1Tests"),
        // The Swift client talks to a host over HTTP and WebSocket only: Foundation's
        // URLSession for requests, NIO's WebSocket client for the realtime stream
        // (swift-corelibs-foundation's URLSessionWebSocketTask needs a libcurl built with
        // WebSocket support, which Debian's is not).
        .target(
            name: "PylonClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/PylonClient"),
        // A todo CLI on the Swift client (README "Swift client").
        .executableTarget(name: "pylon-todo-cli", dependencies: ["PylonClient"], path: "examples/swift-cli"),
        // The replica's apply rate (bench/RESULTS.md).
        .executableTarget(name: "pylon-client-bench", dependencies: ["PylonClient"], path: "bench/swift-client"),
        // The Swift client against a real host (`.build/release/pylon-host`).
        .testTarget(name: "PylonClientTests",
                    dependencies: ["PylonClient", "PylonTestPorts",
                                   .product(name: "Crypto", package: "swift-crypto"),
                                   .product(name: "NIOCore", package: "swift-nio"),
                                   .product(name: "NIOPosix", package: "swift-nio")],
                    path: "Tests/PylonClientTests"),
        // Unit tests of the JSON reader and writer.
        .testTarget(name: "PylonJSONTests", dependencies: ["PylonJSON"], path: "Tests/PylonJSONTests"),
    ],
    swiftLanguageModes: [.v6]
)
