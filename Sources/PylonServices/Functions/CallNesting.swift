import Foundation
import PylonCore

/// Where a function call sits among the calls one outside request started (a route, a job,
/// a workflow step, a cron tick) through `ctx.runQuery` / `runMutation` / `runAction`: how
/// deep it is nested, and the tree's nested calls still waiting, one count shared by every
/// call of the tree. The bounds hold for the whole tree: counted per call, a function that
/// fans out 256 wide at each of 16 levels could start 256^16 calls from one request, and
/// filling the workers with calls that all time out together once left the host with no
/// worker at all.
package struct CallNesting: Sendable {
    /// 0: asked for from outside.
    let depth: Int
    /// Made by the first nested call (most calls nest none).
    private var tree: Tree?

    static let maxDepth = 16
    static let maxWaiting = 256

    private init(depth: Int, tree: Tree?) {
        self.depth = depth
        self.tree = tree
    }

    /// A call asked for from outside: a tree of its own (made when it first nests a call).
    package static let root = CallNesting(depth: 0, tree: nil)

    /// A call nested in this one, one level deeper in the same tree, counted among the
    /// tree's waiting calls until `ended()`: 400 CALL_DEPTH_EXCEEDED at `maxDepth`, 429
    /// TOO_MANY_NESTED_CALLS while `maxWaiting` wait.
    mutating func nested() throws(HostError) -> CallNesting {
        guard depth < Self.maxDepth else {
            throw HostError.badRequest("CALL_DEPTH_EXCEEDED", "functions may call each other at most \(Self.maxDepth) deep; this call is that deep already (recursion without an end?)")
        }
        let tree = self.tree ?? Tree()
        self.tree = tree
        guard tree.admit(Self.maxWaiting) else {
            throw HostError(status: 429, code: "TOO_MANY_NESTED_CALLS",
                            message: "the calls one request starts may wait for at most \(Self.maxWaiting) nested calls at once; await some before starting more")
        }
        return CallNesting(depth: depth + 1, tree: tree)
    }

    /// The call `nested()` made was answered: its place in the tree is free again.
    func ended() { tree?.release() }

    /// The count of one tree's waiting nested calls.
    private final class Tree: @unchecked Sendable {
        private let lock = NSLock()
        private var waiting = 0

        func admit(_ limit: Int) -> Bool {
            lock.withLock {
                guard waiting < limit else { return false }
                waiting += 1
                return true
            }
        }

        func release() { lock.withLock { waiting -= 1 } }
    }
}
