import { PylonError } from "./errors";
import { readEventStream } from "./event-stream";
import { Http } from "./http";

/** Server functions: `POST /api/fn/NAME`, answered whole or streamed. */
export class Functions {
  constructor(private readonly http: Http) {}

  /** Calls a function and answers its return value. */
  call<T = unknown>(name: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.http.request<T>(`/api/fn/${encodeURIComponent(name)}`, { body: args });
  }

  /**
   * Calls a function that streams (`ctx.stream.write`): `onChunk` gets each written piece
   * as it arrives; answers the return value, or throws the function's error.
   */
  async stream<T = unknown>(name: string, args: Record<string, unknown>, onChunk: (chunk: string) => void): Promise<T> {
    const res = await this.http.send(`/api/fn/${encodeURIComponent(name)}`, {
      body: args,
      headers: { Accept: "text/event-stream" },
    });
    if (!res.ok || !res.body || !(res.headers.get("content-type") ?? "").includes("text/event-stream")) {
      return (await Http.json(res)) as T;
    }
    let outcome: { value: T } | { error: PylonError } | null = null;
    await readEventStream(res.body, (e) => {
      if (e.event === "result") outcome = { value: JSON.parse(e.data) as T };
      else if (e.event === "error") {
        const body = JSON.parse(e.data);
        outcome = { error: PylonError.fromBody(res.status, body.error ? body : { error: body }) };
      } else onChunk(e.data);
    });
    const o = outcome as { value: T } | { error: PylonError } | null;
    if (!o) throw new PylonError(0, "STREAM_ENDED", `function ${name} ended its stream without a result`);
    if ("error" in o) throw o.error;
    return o.value;
  }
}
