import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// The FilesLocal plugin: `pylon.files/1` on the local disk (`LocalFileStore`). The host
/// passes the folder as `dir` (by default `files/` beside the database; the manifest's
/// `plugins.files.dir` or `PYLON_FILES_DIR` choose another).

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.files.local", version: "0.1.0",
    description: "File storage on local disk (temp file, fsync, rename; keys chosen by the plugin)",
    capabilities: [PYLON_CAP_FILES],
    create: filesCreate, destroy: filesDestroy, getInterface: filesGetInterface)

nonisolated(unsafe) private let filesTable: UnsafeMutablePointer<pylon_files_v1> = {
    let t = UnsafeMutablePointer<pylon_files_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_files_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_files_v1>.size)
    t.pointee.begin = filesBegin
    t.pointee.write = filesWrite
    t.pointee.commit = filesCommit
    t.pointee.abort = filesAbort
    t.pointee.stat = filesStat
    t.pointee.read = filesRead
    t.pointee.remove = filesRemove
    t.pointee.list = filesList
    return t
}()

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

private func filesCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<LocalFileStore, StoreFailure> in
        guard let obj = configObject(bytes) else {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.files.local: the config is not a JSON object"))
        }
        let dir = obj["dir"]?.stringValue ?? "files"
        guard !dir.isEmpty else {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.files.local: \"dir\" must be a folder path"))
        }
        return LocalFileStore.open(dir: dir, log: HostLog(host))
    }
}

private func filesDestroy(_ p: OpaquePointer?) {
    guard let p else { return }
    _ = Handle.release(p, as: LocalFileStore.self)
}

private func filesGetInterface(_ p: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_FILES) == 0 else { return nil }
    return UnsafeRawPointer(filesTable)
}

@inline(__always)
private func store(_ p: OpaquePointer?) -> LocalFileStore? {
    p.map { Handle.borrow($0, as: LocalFileStore.self) }
}

private let noInstance = StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "called without an instance")

private func key(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> String {
    guard let ptr, len > 0, len <= Int(PYLON_FILES_KEY_MAX) else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: ptr, count: len), as: UTF8.self)
}

private func filesBegin(
    _ p: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ keyOut: UnsafeMutablePointer<CChar>?,
    _ keyLen: UnsafeMutablePointer<Int>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    out?.pointee = nil
    guard let s = store(p), let out, let keyOut, let keyLen else { return storeOutcome(noInstance, err) }
    switch s.begin() {
    case let .failure(f): return storeOutcome(f, err)
    case let .success(upload):
        let bytes = Array(upload.key.utf8)
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(keyOut).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        keyLen.pointee = bytes.count
        out.pointee = Handle.retain(upload)
        return PYLON_OK
    }
}

private func filesWrite(
    _ p: OpaquePointer?, _ u: OpaquePointer?, _ bytes: UnsafePointer<UInt8>?, _ len: Int,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard store(p) != nil, let u else { return storeOutcome(noInstance, err) }
    let upload = Handle.borrow(u, as: LocalUpload.self)
    return storeOutcome(upload.write(UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : len)), err)
}

private func filesCommit(_ p: OpaquePointer?, _ u: OpaquePointer?, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard store(p) != nil, let u else { return storeOutcome(noInstance, err) }
    return storeOutcome(Handle.release(u, as: LocalUpload.self).commit(), err)
}

private func filesAbort(_ p: OpaquePointer?, _ u: OpaquePointer?) {
    guard let u else { return }
    Handle.release(u, as: LocalUpload.self).abort()
}

private func filesStat(
    _ p: OpaquePointer?, _ k: UnsafePointer<CChar>?, _ kLen: Int, _ size: UnsafeMutablePointer<UInt64>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let s = store(p), let size else { return storeOutcome(noInstance, err) }
    switch s.size(of: key(k, kLen)) {
    case let .failure(f): return storeOutcome(f, err)
    case let .success(n):
        size.pointee = n
        return PYLON_OK
    }
}

private func filesRead(
    _ p: OpaquePointer?, _ k: UnsafePointer<CChar>?, _ kLen: Int, _ offset: UInt64, _ buf: UnsafeMutablePointer<UInt8>?,
    _ cap: Int, _ readLen: UnsafeMutablePointer<Int>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let s = store(p), let readLen else { return storeOutcome(noInstance, err) }
    readLen.pointee = 0
    switch s.read(key(k, kLen), offset: offset, into: UnsafeMutableRawBufferPointer(start: buf, count: buf == nil ? 0 : cap)) {
    case let .failure(f): return storeOutcome(f, err)
    case let .success(n):
        readLen.pointee = n
        return PYLON_OK
    }
}

private func filesRemove(_ p: OpaquePointer?, _ k: UnsafePointer<CChar>?, _ kLen: Int, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let s = store(p) else { return storeOutcome(noInstance, err) }
    return storeOutcome(s.remove(key(k, kLen)), err)
}

private func filesList(
    _ p: OpaquePointer?, _ a: UnsafePointer<CChar>?, _ aLen: Int, _ limit: UInt32,
    _ each: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UInt64, Int64) -> Void)?,
    _ ctx: UnsafeMutableRawPointer?, _ more: UnsafeMutablePointer<UInt8>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let s = store(p), let each, let more else { return storeOutcome(noInstance, err) }
    more.pointee = 0
    let after = aLen == 0 ? "" : key(a, aLen)
    switch s.list(after: after, limit: Int(max(1, min(limit, 1000)))) {
    case let .failure(f): return storeOutcome(f, err)
    case let .success(page):
        for f in page.files {
            var bytes = Array(f.key.utf8)
            bytes.withUnsafeMutableBytes { b in each(ctx, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count, f.size, f.modifiedMs) }
        }
        more.pointee = page.more ? 1 : 0
        return PYLON_OK
    }
}
