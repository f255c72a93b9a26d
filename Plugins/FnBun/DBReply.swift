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
    } else if let json, len > 0, let whole = wholeError(Array(UnsafeRawBufferPointer(start: json, count: len))) {
        reply.fail(whole.code, whole.message) // ABI 1.4: the untruncated error
    } else {
        var code = "DB_ERROR"
        var message = "database operation failed"
        if let err {
            var e = err.pointee
            code = withUnsafeBytes(of: &e.code) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            message = withUnsafeBytes(of: &e.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        reply.fail(code, message)
    }
}

/// `{"code", "message"}` as a failed host reply carries it since ABI 1.4.
private func wholeError(_ bytes: [UInt8]) -> (code: String, message: String)? {
    guard let o = try? JSONParser.parse(bytes), let code = o["code"]?.stringValue else { return nil }
    return (code, o["message"]?.stringValue ?? "database operation failed")
}
