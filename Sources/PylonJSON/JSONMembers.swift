/// Where one member of an object is in its document (`JSONParser.members`).
public struct JSONMember: Sendable {
    /// The key's bytes between its quotes, escapes as written.
    public let key: Range<Int>
    /// The value's bytes, as written.
    public let value: Range<Int>
    /// The key has an escape, so it must be decoded before it is compared.
    public let keyHasEscapes: Bool
}

/// An object's top-level members, located in one pass and read when asked. For documents of
/// which a reader wants a few members, some only to hand their raw bytes on: FnBun reads the
/// protocol frames of its Bun workers this way, thousands a second, forwarding a function's
/// return value untouched to the host, which checks it. What is checked when: see
/// `JSONParser.members`.
public struct JSONMembers: Sendable {
    /// The whole document.
    public let bytes: [UInt8]
    public let members: [JSONMember]

    /// Fails unless `bytes` is one object (see `JSONParser.members`).
    public init(_ bytes: [UInt8]) throws(JSONParseError) {
        self.bytes = bytes
        members = try bytes.withUnsafeBufferPointer { b throws(JSONParseError) in try JSONParser.members(b) }
    }

    /// The raw value of `key`: the last one when the key is repeated, as `parse` keeps it.
    /// Keys compare code point for code point (`JSONValue.sameKey`).
    public subscript(_ key: StaticString) -> Range<Int>? {
        let wanted = UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        for m in members.reversed() where keyEquals(m, wanted) { return m.value }
        return nil
    }

    /// The value of `key` as a string; nil when it is missing, not a string, or not one
    /// `parse` would accept (a lone surrogate, say).
    public func string(_ key: StaticString) -> String? {
        guard let range = self[key] else { return nil }
        return bytes.withUnsafeBufferPointer { b in try? JSONParser.string(b, at: range) }
    }

    /// The value of `key`, parsed; nil when it is missing or `parse` refuses it.
    public func value(_ key: StaticString) -> JSONValue? {
        guard let range = self[key] else { return nil }
        return try? JSONParser.parse(Array(bytes[range]))
    }

    private func keyEquals(_ m: JSONMember, _ wanted: UnsafeBufferPointer<UInt8>) -> Bool {
        if !m.keyHasEscapes {
            return m.key.count == wanted.count && bytes[m.key].elementsEqual(wanted)
        }
        let decoded = bytes.withUnsafeBufferPointer { b in try? JSONParser.string(b, at: (m.key.lowerBound - 1)..<(m.key.upperBound + 1)) }
        return decoded.map { $0.utf8.elementsEqual(wanted) } ?? false
    }
}
