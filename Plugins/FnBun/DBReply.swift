import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// Where the host's answer to one `db` frame goes: back to the child that asked, unless
/// that child has been replaced meanwhile. Retained across the host's `db_call`.
final class DBReply {
    let worker: Worker
    let generation: Int
    /// `{"type":"result","call_id":…,"op_id":…,` with the ids' JSON as the child sent them.
    private let head: [UInt8]

    /// `callID`, `opID`: the raw JSON strings from the child's frame.
    init(worker: Worker, generation: Int, callID: ArraySlice<UInt8>, opID: ArraySlice<UInt8>) {
        self.worker = worker
        self.generation = generation
        var h = Array(#"{"type":"result","call_id":"#.utf8)
        h += callID
        h += Array(#","op_id":"#.utf8)
        h += opID
        h.append(UInt8(ascii: ","))
        head = h
    }

    func fail(_ code: String, _ message: String) {
        worker.send(head + Array(#""error":"#.utf8) + JSONWriter.encode(["code": .string(code), "message": .string(message)]) + Array("}\n".utf8),
                    generation: generation)
    }

    func succeed(_ json: UnsafeRawBufferPointer) {
        var frame = head
        frame.reserveCapacity(head.count + json.count + 12)
        frame += Array(#""data":"#.utf8)
        if json.count == 0 { frame += Array("null".utf8) } else { appendOneLine(&frame, json) }
        frame += Array("}\n".utf8)
        worker.send(frame, generation: generation)
    }
}

let dbDone: pylon_fn_db_done_fn = { ctx, status, json, len, err in
    guard let ctx else { return }
    let reply = Unmanaged<DBReply>.fromOpaque(ctx).takeRetainedValue()
    if status == PYLON_OK {
        reply.succeed(UnsafeRawBufferPointer(start: UnsafeRawPointer(json), count: json == nil ? 0 : len))
    } else {
        let code = err.map { errorText($0.pointee.code) } ?? ""
        let message = err.map { errorText($0.pointee.message) } ?? ""
        reply.fail(code.isEmpty ? "DB_ERROR" : code, message.isEmpty ? "database operation failed" : message)
    }
}
