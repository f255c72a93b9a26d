/// A fixed C char array read up to its first NUL or its end: a plugin that forgets the NUL
/// must not make the host read past the buffer.
package func boundedCString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
