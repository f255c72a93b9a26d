import Foundation
import PylonPluginABI

/// Reading a plugin's `pylon_store_v1` table across ABI minors. Tables are append-only and
/// start with their size (DESIGN.md §3 rule 5). The host never reads a plugin's table past
/// its `struct_size`: it copies the table into a host-owned, zero-filled table of the host's
/// layout, so a slot added in a later minor reads as NULL for an older plugin (and the host
/// falls back), and slots of a newer minor that the host does not know are never read.
package enum StoreTable {
    /// PYLON_STORE_V1_MIN_SIZE: the required slots, up to `transaction`; the optional ones
    /// after them read as NULL when the table ends before them.
    static let minimumSize: Int = MemoryLayout<pylon_store_v1>.offset(of: \pylon_store_v1.describe)!

    /// A host-owned copy of the plugin's table (`struct_size` bytes of it, the rest zero).
    /// Lives for the whole process, like the plugin's table. The caller has checked
    /// `struct_size >= minimumSize`.
    package static func normalized(_ raw: UnsafeRawPointer) -> UnsafePointer<pylon_store_v1> {
        let size = Int(raw.load(as: UInt32.self))
        let copy = UnsafeMutablePointer<pylon_store_v1>.allocate(capacity: 1)
        copy.initialize(to: pylon_store_v1())
        memcpy(copy, raw, min(size, MemoryLayout<pylon_store_v1>.size))
        return UnsafePointer(copy)
    }

    /// The store's own one-line description of where its data lives (`describe`), or nil
    /// when the plugin leaves the optional slot NULL.
    package static func describe(_ table: UnsafePointer<pylon_store_v1>, _ instance: OpaquePointer) -> String? {
        guard let fn = table.pointee.describe else { return nil }
        var buf = [CChar](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBufferPointer { fn(instance, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let bytes = buf.prefix(min(n, buf.count - 1)).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
