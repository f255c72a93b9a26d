import { PylonError } from "./errors";
import { readEventStream } from "./event-stream";
import { Http } from "./http";
import { dispatchFrame, streamQuery, unavailable, type StreamHandlers, type StreamStart, type Transport } from "./transport";

/** Sync over server-sent events (`GET /api/sync/events`), for where WebSockets are blocked. */
export class EventStreamTransport implements Transport {
  readonly name = "sse";

  constructor(private readonly http: Http) {}

  async run(start: StreamStart, handlers: StreamHandlers, signal: AbortSignal): Promise<void> {
    let res: Response;
    try {
      res = await this.http.send(`/api/sync/events?${streamQuery(start)}`, {
        headers: { Authorization: `Bearer ${start.token}`, Accept: "text/event-stream" },
        anonymous: true,
        signal,
      });
    } catch (e) {
      if (signal.aborted) return;
      throw unavailable(String(e));
    }
    if (!res.ok || !res.body) {
      await Http.json(res); // throws the host's error
      throw unavailable(`event stream answered ${res.status}`);
    }
    handlers.onOpen();
    let failure: unknown = null;
    try {
      await readEventStream(res.body, (e) => {
        if (failure) return;
        try {
          const data = JSON.parse(e.data);
          if (e.event === "resync") throw PylonError.fromBody(410, data, "RESYNC_REQUIRED");
          if (e.event === "session_ended") throw PylonError.fromBody(401, data, "SESSION_REVOKED");
          dispatchFrame(data, handlers);
        } catch (err) {
          failure = err;
        }
      });
    } catch (e) {
      if (!signal.aborted && !failure) throw PylonError.network(e);
    }
    if (failure) throw failure;
  }

  send(): boolean {
    return false;
  }
}
