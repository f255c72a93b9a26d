import Foundation

/// Where sync stands.
public enum SyncStatus: Sendable, Equatable {
    case stopped, connecting, live, offline
}

/// How the client reconnects and polls.
public struct SyncOptions: Sendable {
    /// Reconnect back-off: full jitter between 0 and min(max, base·2ⁿ).
    public var reconnectBase: Duration = .seconds(1)
    public var reconnectMax: Duration = .seconds(30)
    /// The pull interval without a realtime stream (anonymous callers, `https` hosts).
    public var pollInterval: Duration = .seconds(1)
    /// How long one HTTP request may wait for its answer.
    public var requestTimeout: TimeInterval = 30
    /// A WebSocket that brings nothing (not even the host's 30 s ping) for this long is
    /// taken for dead and opened again.
    public var idleTimeout: Duration = .seconds(75)

    public init() {}
}

/// Keeps the replica in step with the host: push the write queue, pull from the stored
/// cursor until caught up, then follow the WebSocket from that cursor; on any drop, back
/// off and do it again. Each event is stored (rows and cursor in one commit) before the
/// cursor moves, in order; RESYNC_REQUIRED (a pull's 410, or the WebSocket's notice and
/// close 4410) clears the replica, not the write queue, and starts from zero.
///
/// The loop is stopped by cancelling its task: it waits only on sleeps, NIO futures and
/// HTTP requests made without a cancellation handler (see `HTTP`), none of which deadlock.
public actor SyncEngine {
    public private(set) var status: SyncStatus = .stopped
    private let http: HTTP
    private let replica: Replica
    private let queue: WriteQueue
    private let options: SyncOptions
    private var loop: Task<Void, Never>?
    private var socket: WebSocketConnection?
    private var failures = 0
    private var resyncs = 0
    private var retryScheduled = false
    private var statusListeners: [UUID: AsyncStream<SyncStatus>.Continuation] = [:]
    private var messageListeners: [UUID: AsyncStream<JSON>.Continuation] = [:]
    private var openHandlers: [@Sendable () async -> Void] = []
    /// Change events read from the WebSocket that wait for the applier: every frame that
    /// arrived while the previous commit ran goes into the next one, in order.
    private var inbox: [ChangeEvent] = []
    private var applier: Task<Void, Never>?
    private var applyFailure: Error?
    /// With this many events waiting the reader waits for the applier (the socket is then
    /// not read: TCP holds the host back).
    private static let inboxLimit = 10_000

    init(http: HTTP, replica: Replica, queue: WriteQueue, options: SyncOptions) {
        self.http = http
        self.replica = replica
        self.queue = queue
        self.options = options
    }

    public var isRunning: Bool { loop != nil }

    /// Every status change from now on.
    public func statusUpdates() -> AsyncStream<SyncStatus> {
        let (stream, continuation) = AsyncStream<SyncStatus>.makeStream()
        let id = UUID()
        statusListeners[id] = continuation
        continuation.yield(status)
        continuation.onTermination = { _ in Task { await self.removeStatusListener(id) } }
        return stream
    }

    private func removeStatusListener(_ id: UUID) { statusListeners[id] = nil }
    private func removeMessageListener(_ id: UUID) { messageListeners[id] = nil }

    /// Frames of the realtime stream that are not change events (room events, relays).
    func messages() -> AsyncStream<JSON> {
        let (stream, continuation) = AsyncStream<JSON>.makeStream()
        let id = UUID()
        messageListeners[id] = continuation
        continuation.onTermination = { _ in Task { await self.removeMessageListener(id) } }
        return stream
    }

    /// Runs `handler` each time a realtime stream opens (after every reconnect).
    func onOpen(_ handler: @escaping @Sendable () async -> Void) { openHandlers.append(handler) }

    private func setStatus(_ s: SyncStatus) {
        guard status != s else { return }
        status = s
        for c in statusListeners.values { c.yield(s) }
    }

    func start() {
        guard loop == nil else { return }
        loop = Task { await self.run() }
    }

    func stop() async {
        guard let task = loop else { return }
        task.cancel()
        socket?.close()
        await task.value
        loop = nil
        socket = nil
        setStatus(.stopped)
    }

    /// Stops, runs `change` (the token swap), wipes replica and queue, and starts again if
    /// it was running: another user's rows must never show.
    func restart(after change: @Sendable () -> Void) async throws {
        let wasRunning = loop != nil
        await stop()
        change()
        try await replica.reset(ops: true)
        if wasRunning { start() }
    }

    /// Pushes queued writes now if running; a failed push is tried again after the back-off base.
    func kick() {
        guard loop != nil, !retryScheduled else { return }
        Task {
            do { try await queue.flush() } catch { self.retryLater() }
        }
    }

    private func retryLater() {
        guard loop != nil, !retryScheduled else { return }
        retryScheduled = true
        let delay = options.reconnectBase
        Task {
            try? await Task.sleep(for: delay)
            self.retryFired()
        }
    }

    private func retryFired() {
        retryScheduled = false
        kick()
    }

    /// Sends a frame over the open WebSocket; false when none is open.
    func send(_ message: JSON) async -> Bool {
        guard let socket else { return false }
        return await socket.send(message.text)
    }

    /// Waits until the replica has read the log up to `seq` (polling; TIMEOUT after `timeout`).
    public func waitForSeq(_ seq: Int64, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while (await replica.cursor?.lastSeq ?? 0) < seq {
            if ContinuousClock.now > deadline {
                throw PylonError(code: "TIMEOUT", message: "the replica did not reach seq \(seq)", status: 0)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private func run() async {
        while !Task.isCancelled {
            setStatus(.connecting)
            do {
                try await queue.flush()
                try await pullAll()
                resyncs = 0
                let opened = ContinuousClock.now
                try await follow()
                // A stream that ends soon after opening backs off too; one that held resets it.
                failures = ContinuousClock.now - opened < .seconds(5) ? failures + 1 : 0
            } catch let e as PylonError where e.isResync {
                if Task.isCancelled { break }
                await resync()
                continue
            } catch {
                if Task.isCancelled { break }
                setStatus(.offline)
                failures += 1
            }
            if Task.isCancelled { break }
            try? await Task.sleep(for: backoff())
        }
    }

    private func backoff() -> Duration {
        guard failures > 0 else { return .zero }
        let cap = min(options.reconnectMax, options.reconnectBase * (1 << min(failures - 1, 20)))
        return cap * Double.random(in: 0...1)
    }

    /// Clears the replica and starts from zero; a second resync in a row backs off first.
    private func resync() async {
        try? await replica.reset()
        resyncs += 1
        if resyncs > 1 { try? await Task.sleep(for: .seconds(min(30, 1 << min(resyncs, 5)))) }
    }

    /// Pulls pages from the stored cursor until the host has nothing more. The cursor is
    /// adopted even over an empty page (it moves past events the caller may not read).
    private func pullAll() async throws {
        while !Task.isCancelled {
            let c = await replica.cursor
            let page = try await http.request("/api/sync/pull?" + Self.query(c) + "&limit=1000")
            let events = page["changes"]?.arrayValue?.compactMap(ChangeEvent.init(json:)) ?? []
            guard var next = Cursor(json: page["cursor"]) else {
                throw PylonError(code: "BAD_RESPONSE", message: "a pull page without a cursor", status: 0)
            }
            if next.epoch == nil { next.epoch = c?.epoch }
            try await replica.apply(events, cursor: next)
            if page["has_more"]?.boolValue != true { return }
        }
    }

    private static func query(_ c: Cursor?) -> String {
        let since = c?.lastSeq ?? 0
        guard let epoch = c?.epoch, since > 0 else { return "since=\(since)" }
        return "since=\(since)&epoch=\(escape(epoch))"
    }

    /// Follows the WebSocket until it ends (or polls without one).
    private func follow() async throws {
        guard let token = http.tokens.get(), http.baseURL.scheme == "http" else { return try await poll() }
        let ws = try await WebSocketConnection.connect(
            baseURL: http.baseURL, path: "/api/sync/ws?" + Self.query(await replica.cursor),
            headers: [("Authorization", "Bearer \(token)")], idleTimeout: options.idleTimeout)
        socket = ws
        defer { socket = nil }
        if Task.isCancelled { ws.close() }
        var end = WebSocketEnd(code: nil, reason: "")
        var readError: Error?
        do {
            end = try await ws.run(onOpen: { await self.opened() }, onText: { try await self.receive($0) })
        } catch {
            readError = error
        }
        // What was read is applied (or failed) before the stream's outcome counts.
        await applier?.value
        inbox = []
        if let failure = applyFailure {
            // Nothing of the failed batch was stored and the cursor did not move: pull again.
            applyFailure = nil
            throw failure
        }
        if let readError { throw readError }
        if end.code == 4410 {
            throw PylonError(code: PylonError.resyncCode, message: end.reason, status: 410)
        }
    }

    private func opened() {
        setStatus(.live)
        kick()
        for handler in openHandlers { Task { await handler() } }
    }

    /// One text frame: a change event goes to the applier; the resync notice ends the
    /// stream; anything else is a message.
    private func receive(_ text: String) async throws {
        guard let frame = try? JSON.parse(text) else { return }
        if frame["type"] == nil, frame["error"]?["code"]?.stringValue == PylonError.resyncCode {
            throw PylonError.fromBody(status: 410, body: frame)
        }
        guard let event = ChangeEvent(json: frame) else {
            for c in messageListeners.values { c.yield(frame) }
            return
        }
        // After a failed commit nothing more is applied from this stream (it would skip the
        // failed batch); the next pull reads from the unmoved cursor.
        guard applyFailure == nil else { return }
        inbox.append(event)
        if applier == nil { applier = Task { await self.drainInbox() } }
        if inbox.count >= Self.inboxLimit { await applier?.value }
    }

    /// Applies the inbox in batches, each stored (rows and cursor in one commit) before the
    /// cursor moves; a failed commit ends the stream.
    private func drainInbox() async {
        while !inbox.isEmpty, applyFailure == nil {
            let current = await replica.cursor
            let batch = inbox.filter { $0.seq > (current?.lastSeq ?? 0) }
            inbox = []
            guard let last = batch.map(\.seq).max() else { continue }
            do {
                try await replica.apply(batch, cursor: Cursor(lastSeq: last, epoch: current?.epoch))
            } catch {
                applyFailure = error
                socket?.close()
            }
        }
        applier = nil
    }

    private func poll() async throws {
        setStatus(.live)
        while !Task.isCancelled {
            try await Task.sleep(for: options.pollInterval)
            try await queue.flush()
            try await pullAll()
        }
    }
}
