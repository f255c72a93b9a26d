// The replica's apply rate in Bun: change events stored (MemoryStore) and applied per
// second, in batches as the sync engine hands them over (a pull page or a burst of
// WebSocket frames). Run: bun bench/apply-rate.ts [events] [batch]
import { MemoryStore, Replica, type ChangeEvent } from "../src";

const total = Number(process.argv[2] ?? 200_000);
const batch = Number(process.argv[3] ?? 1000);
const replica = new Replica(new MemoryStore());
await replica.load();

// 80% inserts, 15% updates of earlier rows, 5% deletes.
const events: ChangeEvent[] = [];
for (let seq = 1; seq <= total; seq++) {
  const r = seq % 20;
  const target = `row${Math.max(1, seq - 50)}`;
  if (r < 16) events.push({ seq, entity: "Todo", row_id: `row${seq}`, kind: "insert", data: { title: `todo ${seq}`, done: false, priority: seq % 5 } });
  else if (r < 19) events.push({ seq, entity: "Todo", row_id: target, kind: "update", data: { done: true } });
  else events.push({ seq, entity: "Todo", row_id: target, kind: "delete" });
}

const started = performance.now();
for (let i = 0; i < events.length; i += batch) {
  const page = events.slice(i, i + batch);
  await replica.applyEvents(page, { last_seq: page[page.length - 1].seq, epoch: "bench" });
}
const secs = (performance.now() - started) / 1000;
console.log(`${total} events in batches of ${batch}: ${(total / secs).toFixed(0)} events/s (${secs.toFixed(2)} s), ${replica.visible("Todo").length} rows`);
