import Foundation
import PylonCore
import PylonData

/// A mutation's operations, run one by one on the writer thread inside its transaction.
final class MutationSession: @unchecked Sendable {
    enum Item {
        case op(FnOp, DBReplyBox)
        case finish(Result<[UInt8], HostError>)
    }

    private let cond = NSCondition()
    private var items: [Item] = []
    private var over = false
    let ops: FnOps
    /// Inserts the function made before its transaction began (`FnCall.held`).
    private let held: [(op: FnOp, id: String)]

    init(ops: FnOps, held: [(op: FnOp, id: String)] = []) {
        self.ops = ops
        self.held = held
    }

    func post(_ item: Item) {
        cond.lock()
        if over {
            cond.unlock()
            if case let .op(_, reply) = item {
                reply.fail(HostError(status: 409, code: "CALL_FINISHED", message: "the mutation's transaction has already ended"))
            }
            return
        }
        items.append(item)
        cond.signal()
        cond.unlock()
    }

    /// The transaction ended without running (or finishing) the function: answer what waits.
    func abandon() {
        cond.lock()
        over = true
        let left = items
        items.removeAll()
        cond.unlock()
        for case let .op(_, reply) in left {
            reply.fail(HostError(status: 409, code: "CALL_FINISHED", message: "the mutation's transaction has already ended"))
        }
    }

    /// Runs inside `store.write`: each operation in a savepoint (a failed one is undone
    /// alone and reported to the function, which may catch it); the function's return
    /// commits, its error rolls everything back.
    func run(_ tx: WriteTransaction) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(FunctionService.mutationHoldLimit)
        if !held.isEmpty {
            do {
                try ops.applyHeld(held, in: tx)
            } catch {
                // The function was told these succeeded: run it again the ordinary way.
                cond.lock()
                over = true
                cond.unlock()
                throw FnRestart()
            }
        }
        while true {
            cond.lock()
            while items.isEmpty {
                if !cond.wait(until: deadline) && items.isEmpty {
                    over = true
                    cond.unlock()
                    throw HostError(status: 504, code: "FUNCTION_TIMEOUT", message: "the mutation held its transaction for \(Int(FunctionService.mutationHoldLimit)) s without finishing; rolled back")
                }
            }
            let item = items.removeFirst()
            if case .finish = item { over = true }
            cond.unlock()
            switch item {
            case let .finish(.success(bytes)): return bytes
            case let .finish(.failure(e)): throw e
            case let .op(op, reply):
                let mark = tx.events.count
                do {
                    try tx.connection.execute("SAVEPOINT pylon_fn_op", wantRows: false)
                } catch {
                    reply.fail(DataService.hostError(error))
                    continue
                }
                do {
                    let r = try ops.run(op, in: tx)
                    try tx.connection.execute("RELEASE pylon_fn_op", wantRows: false)
                    reply.succeed(r)
                } catch {
                    _ = try? tx.connection.execute("ROLLBACK TO pylon_fn_op", wantRows: false)
                    _ = try? tx.connection.execute("RELEASE pylon_fn_op", wantRows: false)
                    if tx.events.count > mark { tx.events.removeSubrange(mark...) }
                    reply.fail(DataService.hostError(error))
                }
            }
        }
    }
}
