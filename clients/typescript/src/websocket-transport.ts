import { PylonError } from "./errors";
import { dispatchFrame, streamQuery, unavailable, type StreamHandlers, type StreamStart, type Transport } from "./transport";

/**
 * Sync over `GET /api/sync/ws?since=N&epoch=E`. The token travels as the subprotocol
 * `bearer.<token>` (browsers cannot set headers on a WebSocket). The host sends a stale
 * cursor's 410 body as a text frame and closes with 4410.
 */
export class WebSocketTransport implements Transport {
  readonly name = "websocket";
  private socket: WebSocket | null = null;

  constructor(private readonly baseUrl: string) {}

  run(start: StreamStart, handlers: StreamHandlers, signal: AbortSignal): Promise<void> {
    const url = this.baseUrl.replace(/^http/, "ws").replace(/\/+$/, "") + `/api/sync/ws?${streamQuery(start)}`;
    return new Promise((resolve, reject) => {
      let opened = false;
      let failure: unknown = null;
      let ws: WebSocket;
      try {
        ws = new WebSocket(url, [`bearer.${encodeURIComponent(start.token)}`]);
      } catch (e) {
        reject(unavailable(String(e)));
        return;
      }
      this.socket = ws;
      const abort = () => ws.close(1000, "client stopped");
      signal.addEventListener("abort", abort, { once: true });
      ws.onopen = () => {
        opened = true;
        handlers.onOpen();
      };
      ws.onmessage = (m) => {
        if (typeof m.data !== "string") return; // binary frames (CRDT, shards) are not ours
        let frame: unknown;
        try {
          frame = JSON.parse(m.data);
        } catch {
          return; // not a frame of this protocol
        }
        try {
          dispatchFrame(frame, handlers);
        } catch (e) {
          failure = e; // the resync notice; the host closes with 4410 next
        }
      };
      ws.onclose = (c) => {
        signal.removeEventListener("abort", abort);
        if (this.socket === ws) this.socket = null;
        if (c.code === 4410 && !(failure instanceof PylonError)) {
          failure = new PylonError(410, "RESYNC_REQUIRED", c.reason || "the cursor is no longer valid");
        }
        if (failure) reject(failure);
        else if (!opened) reject(unavailable(`websocket closed before opening (${c.code} ${c.reason})`));
        else resolve();
      };
    });
  }

  send(message: unknown): boolean {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }
}
