// The Swift client's replica apply rate: change events stored (MemoryStore) and applied per
// second, in batches as the sync engine hands them over (a pull page, or the WebSocket
// frames that arrived while the previous commit ran).
// Run: swift run -c release pylon-client-bench [events] [batch]
import Foundation
import PylonClient

let args = CommandLine.arguments
let total = args.count > 1 ? Int(args[1]) ?? 200_000 : 200_000
let batch = args.count > 2 ? Int(args[2]) ?? 1000 : 1000

// 80% inserts, 15% updates of earlier rows, 5% deletes (as clients/typescript/bench/apply-rate.ts).
var events: [ChangeEvent] = []
events.reserveCapacity(total)
for seq in 1...Int64(total) {
    let r = seq % 20
    let target = "row\(max(1, seq - 50))"
    if r < 16 {
        events.append(ChangeEvent(seq: seq, entity: "Todo", rowId: "row\(seq)", kind: .insert,
                                  data: ["title": .string("todo \(seq)"), "done": false, "priority": .int(seq % 5)]))
    } else if r < 19 {
        events.append(ChangeEvent(seq: seq, entity: "Todo", rowId: target, kind: .update, data: ["done": true]))
    } else {
        events.append(ChangeEvent(seq: seq, entity: "Todo", rowId: target, kind: .delete))
    }
}

let replica = Replica(store: MemoryStore())
let clock = ContinuousClock()
let started = clock.now
var i = 0
while i < events.count {
    let page = Array(events[i..<min(i + batch, events.count)])
    try await replica.apply(page, cursor: Cursor(lastSeq: page[page.count - 1].seq, epoch: "bench"))
    i += batch
}
let elapsed = clock.now - started
let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let rows = await replica.visible("Todo").count
print("\(total) events in batches of \(batch): \(Int(Double(total) / secs)) events/s (\(String(format: "%.2f", secs)) s), \(rows) rows")
