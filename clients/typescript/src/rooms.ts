import type { Http } from "./http";
import type { SyncEngine } from "./sync-engine";

/** A room event from the realtime stream. */
export interface RoomEvent {
  type: "join" | "leave" | "presence" | "broadcast";
  room: string;
  user_id?: string;
  sender?: string;
  topic?: string;
  data?: unknown;
  reason?: string;
}

export interface Peer {
  user_id: string;
  data: unknown;
  joined_at: number | string;
}

const ROOM_EVENTS = new Set(["join", "leave", "presence", "broadcast"]);

/**
 * Rooms and presence (`/api/rooms/*`). Events reach members through the realtime stream,
 * so join after `sync` is live; the host drops a user from every room when their last
 * stream closes, so joined rooms are joined again (with the last data) on every reconnect.
 */
export class Rooms {
  private joined = new Map<string, unknown>();
  private listeners = new Map<string, Set<(e: RoomEvent) => void>>();

  constructor(
    private readonly http: Http,
    sync: SyncEngine,
  ) {
    sync.onMessage((m) => {
      if (typeof m.room !== "string" || !ROOM_EVENTS.has(String(m.type))) return;
      for (const fn of [...(this.listeners.get(m.room) ?? [])]) fn(m as unknown as RoomEvent);
    });
    sync.onOpen(() => {
      for (const [room, data] of this.joined) this.join(room, data).catch(() => {});
    });
  }

  /** Calls `fn` with every event of `room` (join, leave, presence, broadcast). */
  on(room: string, fn: (e: RoomEvent) => void): () => void {
    let set = this.listeners.get(room);
    if (!set) this.listeners.set(room, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Joins with presence `data`; answers the peers already there. */
  async join(room: string, data?: unknown): Promise<Peer[]> {
    const r = await this.http.request<{ snapshot: { peers: Peer[] } }>("/api/rooms/join", { body: { room, data } });
    this.joined.set(room, data);
    return r.snapshot?.peers ?? [];
  }

  async leave(room: string): Promise<void> {
    this.joined.delete(room);
    await this.http.request("/api/rooms/leave", { body: { room } });
  }

  /** Replaces this user's presence data in the room. */
  async setPresence(room: string, data: unknown): Promise<boolean> {
    const r = await this.http.request<{ updated: boolean }>("/api/rooms/presence", { body: { room, data } });
    if (r.updated && this.joined.has(room)) this.joined.set(room, data);
    return r.updated;
  }

  /** Sends `data` under `topic` to the room's members. */
  async broadcast(room: string, topic: string, data?: unknown): Promise<boolean> {
    const r = await this.http.request<{ broadcasted: boolean }>("/api/rooms/broadcast", { body: { room, topic, data } });
    return r.broadcasted;
  }

  /** The members of a room the caller is in. */
  async members(room: string): Promise<Peer[]> {
    const r = await this.http.request<{ members: Peer[] }>(`/api/rooms/${encodeURIComponent(room)}`);
    return r.members;
  }
}
