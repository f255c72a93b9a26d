// A todo list on the Swift client, against `make run` (examples/todo on port 4321):
//
//   swift run pylon-todo-cli list            the open todos
//   swift run pylon-todo-cli add "Buy milk"  adds one (queued offline until the host answers)
//   swift run pylon-todo-cli done <id>       marks one done
//   swift run pylon-todo-cli watch           prints the list again whenever it changes (Ctrl-C ends)
//
// PYLON_URL picks another host. The first run signs in as a guest and keeps the token in
// ~/.pylon-todo-cli-token, so later runs are the same user (the host limits guest sign-ins
// per address).
import Foundation
import PylonClient

let args = Array(CommandLine.arguments.dropFirst())
let baseURL = URL(string: ProcessInfo.processInfo.environment["PYLON_URL"] ?? "http://localhost:4321")!
let client = PylonClient(baseURL: baseURL)
let openTodos = Query(where: [("done", .eq(false))], orderBy: [("title", .asc)])

/// Writes a line unbuffered, so `watch` piped into a file or a program shows each change at once.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func printList(_ rows: [Row]) {
    say(rows.isEmpty ? "(nothing to do)" : rows.map { "[\($0.id)] \($0["title"]?.stringValue ?? "")" }.joined(separator: "\n"))
}

/// The saved guest token if the host still knows it, else a new guest session (saved).
func signIn() async throws {
    let file = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".pylon-todo-cli-token")
    if let saved = try? String(contentsOf: file, encoding: .utf8) {
        try await client.auth.setToken(saved.trimmingCharacters(in: .whitespacesAndNewlines))
        if let me = try? await client.auth.me(), me["user_id"]?.stringValue != nil { return }
    }
    let session = try await client.auth.guest()
    try? Data(session.token.utf8).write(to: file)
}

/// Waits until the replica has caught up with the host (sync is live).
func waitUntilLive() async {
    for await status in await client.sync.statusUpdates() where status == .live { return }
}

/// Waits until every queued write has been taken by the host and is back in the replica
/// with the host's id (a write the host refused leaves the queue too: `client.rejections()`).
func waitUntilSettled() async throws {
    while !(await client.replica.ops.isEmpty) { try await Task.sleep(for: .milliseconds(50)) }
}

do {
    try await signIn()
    try await client.start()
    await waitUntilLive()
    switch (args.first, args.dropFirst().first) {
    case ("list", _), (nil, _):
        printList(await client.rows("Todo", openTodos))
    case let ("add", title?):
        try await client.insert("Todo", ["title": .string(title), "done": false])
        try await waitUntilSettled()
        say("added \"\(title)\"")
    case let ("done", id?):
        try await client.update("Todo", id, ["done": true])
        try await waitUntilSettled()
        say("done \(id)")
    case ("watch", _):
        for await rows in client.liveQuery("Todo", openTodos) {
            say("--- \(rows.count) open")
            printList(rows)
        }
    default:
        say("usage: pylon-todo-cli [list | add TITLE | done ID | watch]")
    }
    await client.stop()
} catch {
    say("error: \(error)")
    exit(1)
}
