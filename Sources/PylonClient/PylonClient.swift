import Foundation

/// The client: auth, a synced local replica with offline writes, live queries, functions
/// and rooms, over HTTP and one WebSocket. Call `start()` to load the replica and sync.
///
/// ```swift
/// let client = PylonClient(baseURL: URL(string: "http://localhost:4321")!)
/// try await client.auth.guest()
/// try await client.start()
/// let id = try await client.insert("Todo", ["title": "milk", "done": false])
/// for await rows in client.liveQuery("Todo", Query(where: [("done", .eq(false))])) { print(rows) }
/// ```
public final class PylonClient: Sendable {
    let http: HTTP
    public let auth: Auth
    public let replica: Replica
    let queue: WriteQueue
    public let sync: SyncEngine
    public let functions: Functions
    public let rooms: Rooms
    public let shards: Shards
    public let files: Files

    /// `store` keeps the replica (default: memory); `tokens` the token (default: memory).
    public init(baseURL: URL, store: ReplicaStore = MemoryStore(), tokens: TokenStorage = MemoryTokenStorage(),
                options: SyncOptions = SyncOptions()) {
        let http = HTTP(baseURL: baseURL, tokens: tokens, timeout: options.requestTimeout)
        let replica = Replica(store: store)
        let queue = WriteQueue(http: http, replica: replica)
        let sync = SyncEngine(http: http, replica: replica, queue: queue, options: options)
        let rooms = Rooms(http: http, sync: sync)
        self.http = http
        self.replica = replica
        self.queue = queue
        self.sync = sync
        self.rooms = rooms
        auth = Auth(http: http, sync: sync)
        functions = Functions(http: http)
        shards = Shards(http: http)
        files = Files(http: http)
        // Registered before any start (an actor call, so in a task that `start` waits for).
        registration = Task { await sync.onOpen { await rooms.rejoin() } }
    }

    private let registration: Task<Void, Never>

    /// Loads the stored replica and starts syncing from its cursor. Call `stop()` when done:
    /// the sync loop runs until then, whether or not the client is still referenced.
    public func start() async throws(PylonError) {
        await registration.value
        guard !(await sync.isRunning) else { return }
        do { try await replica.load() } catch { throw PylonError.store(error) }
        await sync.start()
    }

    /// Stops syncing (the replica and the write queue stay in the store).
    public func stop() async {
        await sync.stop()
    }

    /// Queues an insert (shown at once); answers its `_pending_` id, which the host maps to
    /// its own id when the write is pushed.
    @discardableResult
    public func insert(_ entity: String, _ data: Row) async throws(PylonError) -> String {
        let id = Ids.pending()
        try await write(.insert, entity, id, data)
        return id
    }

    public func update(_ entity: String, _ id: String, _ patch: Row) async throws(PylonError) {
        try await write(.update, entity, id, patch)
    }

    public func delete(_ entity: String, _ id: String) async throws(PylonError) {
        try await write(.delete, entity, id, nil)
    }

    private func write(_ kind: ChangeKind, _ entity: String, _ id: String, _ data: Row?) async throws(PylonError) {
        do { try await queue.enqueue(kind, entity, rowId: id, data: data) } catch { throw PylonError.store(error) }
        await sync.kick()
    }

    /// Writes the host refused (already rolled back), from now on.
    public func rejections() async -> AsyncStream<Rejection> {
        await queue.rejections()
    }

    /// Queued writes the host has not taken yet.
    public func pendingWrites() async -> [QueuedOp] {
        await replica.ops.filter { $0.acked == nil }
    }

    /// Sends a frame over the realtime WebSocket (presence/topic relays); false when none is open.
    public func send(_ frame: JSON) async -> Bool {
        await sync.send(frame)
    }
}
