import Atomics

/// A counter many threads take numbers from without a lock (swift-atomics: Synchronization's
/// Atomic needs newer deployment targets). Numbers start at 1.
package final class AtomicCounter: Sendable {
    private let value = ManagedAtomic<UInt64>(0)
    package init() {}
    package func next() -> UInt64 { value.wrappingIncrementThenLoad(ordering: .relaxed) }
}
