import Atomics

/// Metric series by name (a route template, a function name), made on first use and then
/// found without a lock: an open-addressing hash table whose slots are set once
/// (`ManagedAtomicLazyReference`), so a lookup is a hash, an atomic load or two and a
/// string comparison. Holds at most `capacity` names; past that `series` returns nil and
/// the caller counts under a catch-all label, so the output stays bounded whatever names
/// arrive. Two first uses of one name at once may both run `make`; one result is kept.
package final class SeriesTable<Series: AnyObject & Sendable>: Sendable {
    let capacity: Int
    private let slots: [ManagedAtomicLazyReference<SeriesEntry<Series>>]
    private let mask: Int
    private let filled = ManagedAtomic<Int>(0)
    private let make: @Sendable (String) -> Series

    package init(capacity: Int, make: @escaping @Sendable (String) -> Series) {
        self.capacity = capacity
        var size = 16
        while size < capacity * 2 { size *= 2 }
        slots = (0..<size).map { _ in ManagedAtomicLazyReference() }
        mask = size - 1
        self.make = make
    }

    /// The series of `name`, made now if it is new; nil when the table is full.
    package func series(_ name: String) -> Series? {
        var i = name.hashValue & mask
        for _ in 0..<slots.count {
            if let e = slots[i].load() {
                if e.name == name { return e.series }
                i = (i + 1) & mask
                continue
            }
            if filled.loadThenWrappingIncrement(ordering: .relaxed) >= capacity {
                filled.wrappingDecrement(ordering: .relaxed)
                return nil
            }
            let mine = SeriesEntry(name: name, series: make(name))
            let kept = slots[i].storeIfNilThenLoad(mine)
            if kept !== mine { filled.wrappingDecrement(ordering: .relaxed) }
            if kept.name == name { return kept.series }
            i = (i + 1) & mask
        }
        return nil
    }
}

final class SeriesEntry<Series: AnyObject & Sendable>: Sendable {
    let name: String
    let series: Series
    init(name: String, series: Series) {
        self.name = name
        self.series = series
    }
}

extension ManagedAtomicLazyReference {
    /// The stored instance, or `make()`'s once stored (by this call or a concurrent one).
    package func get(_ make: () -> Instance) -> Instance { load() ?? storeIfNilThenLoad(make()) }
}
