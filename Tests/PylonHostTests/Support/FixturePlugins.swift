import Foundation

/// The C fixture plugins (`Tests/Fixtures/plugins/NAME.c`), built with `cc` against the
/// ABI header as strictly as a third party's plugin should be: C99, every warning an error.
enum FixturePlugins {
    static var folder: URL { TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/plugins") }
    static var abiInclude: String { TestPaths.packageRoot.appendingPathComponent("Sources/PylonPluginABI/include").path }

    /// Builds `NAME.c` into the shared library `output`; `defines` become `-D`s, `extra`
    /// goes after the source (more `-I`s, libraries).
    static func compile(_ name: String, to output: String, defines: [String] = [], extra: [String] = []) async throws {
        let source = folder.appendingPathComponent(name + ".c").path
        let args = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I\(abiInclude)"] + defines.map { "-D\($0)" }
            + ["-o", output, source] + extra
        let r = try await TestCommand.run("/usr/bin/env", args, timeout: 120)
        guard r.status == 0 else {
            throw TestSetupError(description: "cc failed (\(r.status)): \(args.joined(separator: " "))\n\(r.stderr)")
        }
    }
}
