import Dispatch
import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonData
import PylonJSON

// The functions of the `pylon_fn_host_v1` table `FunctionService` hands the functions
// plugin (`db_call`, `complete`, `run_fn`, `stream`): each turns its C arguments into Swift
// values and passes them to the call (`FnCall`) whose `call_ctx` it gets.

func fnHostDBCall(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ json: UnsafePointer<CChar>?,
                          _ len: Int, _ done: pylon_fn_db_done_fn?, _ doneCtx: UnsafeMutableRawPointer?) {
    guard let done else { return }
    let reply = DBReplyBox(done: done, ctx: doneCtx)
    guard let callCtx, let json else {
        reply.fail(HostError.badRequest("INVALID_OP", "db_call without a call or an operation"))
        return
    }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    let op: FnOp
    do {
        op = try FnOp.parse(Array(UnsafeRawBufferPointer(start: json, count: len)))
    } catch {
        reply.fail(DataService.hostError(error))
        return
    }
    call.db(op, reply)
}

func fnHostComplete(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ status: pylon_status,
                            _ json: UnsafePointer<CChar>?, _ len: Int, _ err: UnsafePointer<pylon_error>?) {
    guard let callCtx else { return }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeRetainedValue()
    if status == PYLON_OK {
        let bytes = json.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? Array("null".utf8)
        // The plugin hands over the function's value; never trust it to be JSON.
        if (try? JSONParser.validate(bytes)) == nil {
            call.complete(.failure(HostError(status: 502, code: "INVALID_RESULT", message: "the function runtime returned a result that is not JSON")))
        } else {
            call.complete(.success(bytes))
        }
    } else {
        let e = PluginError(status, err)
        call.complete(.failure(FunctionService.hostError(status, e.code, e.message)))
    }
}

func fnHostRunFn(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?,
                         _ nameLen: Int, _ kind: Int32, _ args: UnsafePointer<CChar>?, _ argsLen: Int,
                         _ done: pylon_fn_db_done_fn?, _ doneCtx: UnsafeMutableRawPointer?) {
    guard let done else { return }
    let reply = DBReplyBox(done: done, ctx: doneCtx)
    guard let callCtx, let name, nameLen > 0 else {
        reply.fail(HostError.badRequest("INVALID_OP", "run_fn without a call or a function name"))
        return
    }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    let fn = String(decoding: UnsafeRawBufferPointer(start: name, count: nameLen), as: UTF8.self)
    var value: JSONValue = .object([])
    if let args, argsLen > 0 {
        do {
            value = try JSONParser.parse(Array(UnsafeRawBufferPointer(start: args, count: argsLen)))
        } catch {
            reply.fail(HostError.badRequest("INVALID_ARGS", "the arguments are not JSON: \(error)"))
            return
        }
    }
    call.runNested(fn, kind: kind, args: value, reply)
}

func fnHostStream(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ event: UnsafePointer<CChar>?,
                          _ eventLen: Int, _ data: UnsafePointer<CChar>?, _ dataLen: Int) {
    guard let callCtx else { return }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    call.recordStream(bytes: dataLen)
    guard let sink = call.onStream else { return }
    let text = { (p: UnsafePointer<CChar>?, n: Int) in
        p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: n), as: UTF8.self) } ?? ""
    }
    sink(text(event, eventLen), text(data, dataLen))
}
