import Foundation
import Testing

/// examples/chat end to end in a real browser: the release host serves the example's page
/// (bundled here by Bun with the TypeScript client compiled in) and its functions, and
/// Tests/Fixtures/chat/browser.py drives two headless Chromium browsers through sign-in
/// (password and email code), channels, live messages, presence and typing, one browser
/// offline while three messages are sent (each arrives exactly once after it reconnects),
/// an image attachment, unread counts and a reload from the IndexedDB replica.
@Suite("Chat example in Chromium")
struct ChatExampleTests {
    static let example = TestPaths.packageRoot.appendingPathComponent("examples/chat")

    /// The example's files as `HostProcess.start` takes them, with the page bundled.
    static func exampleFiles() async throws -> [String: String] {
        let bundle = FileManager.default.temporaryDirectory.appendingPathComponent("chat-app-\(UUID().uuidString).js").path
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        let built = try await TestCommand.run("/usr/bin/env", ["bun", "build", example.appendingPathComponent("src/app.ts").path,
                                                               "--outfile", bundle, "--target", "browser", "--format", "esm"], timeout: 120)
        guard built.status == 0 else { throw TestSetupError(description: "bun build of examples/chat failed: \(built.stdout)\(built.stderr)") }
        var files = ["web/app.js": try String(contentsOfFile: bundle, encoding: .utf8)]
        for folder in ["functions", "web"] {
            let dir = example.appendingPathComponent(folder)
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name != "app.js" {
                files["\(folder)/\(name)"] = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            }
        }
        return files
    }

    @Test("Two users chat in Chromium: sign-in, channels, live messages, presence, typing, offline and back, an image, unread counts, a reload")
    func twoBrowsers() async throws {
        let manifest = try String(contentsOf: Self.example.appendingPathComponent("pylon.manifest.json"), encoding: .utf8)
        let host = try await HostProcess.start(manifest: manifest, files: try await Self.exampleFiles())
        defer { host.stop() }
        let script = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/chat/browser.py").path
        let run = try await TestCommand.run("/usr/bin/env", ["python3", script, host.baseURL], timeout: 420)
        #expect(run.status == 0, "browser test failed:\n\(run.stdout)\n\(run.stderr)\nhost log:\n\(host.log.suffix(4000))")
        #expect(run.stdout.contains("chat browser test passed"), "\(run.stdout)")
    }
}
