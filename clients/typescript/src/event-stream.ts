/** One server-sent event: its `event:` name (default "message"), `data:` lines and `id:`. */
export interface ServerEvent {
  event: string;
  data: string;
  id?: string;
}

/**
 * Reads `text/event-stream` from a fetch body, calling `onEvent` per event (comments and
 * keepalives skipped); resolves when the body ends.
 */
export async function readEventStream(body: ReadableStream<Uint8Array>, onEvent: (e: ServerEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  let id: string | undefined;
  const line = (l: string) => {
    if (l === "") {
      if (data.length) onEvent({ event, data: data.join("\n"), id });
      event = "message";
      data = [];
      id = undefined;
      return;
    }
    if (l.startsWith(":")) return;
    const colon = l.indexOf(":");
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? "" : l.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        line(buffer.slice(0, nl).replace(/\r$/, ""));
        buffer = buffer.slice(nl + 1);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
