// A todo list on the Swift client, against `make run` (examples/todo on port 4321):
//
//   swift run pylon-todo-cli list            the open todos
//   swift run pylon-todo-cli add "Buy milk"  adds one (queued offline until the host answers)
//   swift run pylon-todo-cli done <id>       marks one done
//   swift run pylon-todo-cli watch           prints the list again whenever it changes (Ctrl-C ends)
//
// PYLON_URL picks another host. Each run signs in as a new guest.
import Foundation
import PylonClient

let args = Array(CommandLine.arguments.dropFirst())
let baseURL = URL(string: ProcessInfo.processInfo.environment["PYLON_URL"] ?? "http://localhost:4321")!
let client = PylonClient(baseURL: baseURL)
let openTodos = Query(where: [("done", .eq(false))], orderBy: [("title", .asc)])

func printList(_ rows: [Row]) {
    print(rows.isEmpty ? "(nothing to do)" : rows.map { "[\($0.id)] \($0["title"]?.stringValue ?? "")" }.joined(separator: "\n"))
}

/// Waits until the replica has caught up with the host (sync is live).
func waitUntilLive() async {
    for await status in await client.sync.statusUpdates() where status == .live { return }
}

/// Waits until every queued write has been taken by the host.
func waitUntilPushed() async throws {
    while !(await client.pendingWrites().isEmpty) { try await Task.sleep(for: .milliseconds(50)) }
}

do {
    _ = try await client.auth.guest()
    try await client.start()
    await waitUntilLive()
    switch (args.first, args.dropFirst().first) {
    case ("list", _), (nil, _):
        printList(await client.rows("Todo", openTodos))
    case let ("add", title?):
        let id = try await client.insert("Todo", ["title": .string(title), "done": false])
        try await waitUntilPushed()
        print("added \(id) (\"\(title)\")")
    case let ("done", id?):
        try await client.update("Todo", id, ["done": true])
        try await waitUntilPushed()
        print("done \(id)")
    case ("watch", _):
        for await rows in client.liveQuery("Todo", openTodos) {
            print("--- \(rows.count) open")
            printList(rows)
        }
    default:
        print("usage: pylon-todo-cli [list | add TITLE | done ID | watch]")
    }
    await client.stop()
} catch {
    print("error: \(error)")
    exit(1)
}
