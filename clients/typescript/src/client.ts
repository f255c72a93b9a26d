import { Auth } from "./auth";
import { Files } from "./files";
import { Functions } from "./functions";
import { Http } from "./http";
import { clientId } from "./ids";
import { LiveQuery, runQuery, type QuerySpec } from "./live-query";
import { Replica, type Row } from "./replica";
import { Rooms } from "./rooms";
import { Shards } from "./shards";
import { MemoryStore, type ReplicaStore } from "./store";
import { SyncEngine, type SyncOptions } from "./sync-engine";
import { MemoryTokenStorage, type TokenStorage } from "./token-storage";
import { WriteQueue, type Rejection } from "./write-queue";

export interface PylonClientOptions extends SyncOptions {
  /** The host, e.g. `http://localhost:4321`. */
  baseUrl: string;
  /** Where the session token lives (default: memory). */
  tokens?: TokenStorage;
  /** Where the replica lives (default: memory; `IndexedDBStore` in browsers). */
  store?: ReplicaStore;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

/**
 * The client: auth, a synced local replica with offline writes, live queries, functions,
 * rooms and files. Call `start()` to load the replica and begin syncing.
 */
export class PylonClient {
  readonly http: Http;
  readonly auth: Auth;
  readonly replica: Replica;
  readonly queue: WriteQueue;
  readonly sync: SyncEngine;
  readonly functions: Functions;
  readonly rooms: Rooms;
  readonly files: Files;
  readonly shards: Shards;
  private started: Promise<void> | null = null;
  private authChange: Promise<void> = Promise.resolve();

  constructor(options: PylonClientOptions) {
    this.http = new Http(options.baseUrl, options.tokens ?? new MemoryTokenStorage(), options.fetch);
    this.auth = new Auth(this.http, () => this.onAuthChange());
    this.replica = new Replica(options.store ?? new MemoryStore());
    this.queue = new WriteQueue(this.http, this.replica, clientId(), () => this.sync.kick());
    this.sync = new SyncEngine(this.http, this.replica, this.queue, options);
    this.functions = new Functions(this.http);
    this.rooms = new Rooms(this.http, this.sync);
    this.files = new Files(this.http);
    this.shards = new Shards(this.http);
  }

  /** Loads the stored replica and starts syncing from its cursor. */
  start(): Promise<void> {
    // A sign-in just made may still be wiping the previous caller's replica.
    this.started ??= this.authChange.then(() => this.replica.load()).then(() => this.sync.start());
    return this.started;
  }

  /** Stops syncing (the replica and queue stay stored). */
  async stop(): Promise<void> {
    await this.started;
    await this.sync.stop();
    this.started = null;
  }

  /**
   * Another user's rows must not show: a token change wipes the replica, the queue and the
   * cursor, and sync starts again as the new caller.
   */
  private onAuthChange(): void {
    // Never waits for `started` (which itself waits for auth changes before it).
    this.authChange = this.authChange.then(async () => {
      const running = this.sync.running;
      await this.sync.stop();
      await this.replica.reset({ ops: true });
      if (running) this.sync.start();
    });
  }

  /** Resolves when an auth change's restart of sync has finished. */
  settled(): Promise<void> {
    return this.authChange;
  }

  insert(entity: string, data: Record<string, unknown>): Promise<string> {
    return this.queue.insert(entity, data);
  }

  update(entity: string, id: string, patch: Record<string, unknown>): Promise<void> {
    return this.queue.update(entity, id, patch);
  }

  delete(entity: string, id: string): Promise<void> {
    return this.queue.delete(entity, id);
  }

  /** Calls `fn` for each queued write the host refused (already rolled back). */
  onReject(fn: (r: Rejection) => void): () => void {
    return this.queue.onReject(fn);
  }

  /** The replica's rows of `entity` now (queued writes included). */
  rows(entity: string, spec: QuerySpec = {}): Row[] {
    return runQuery(this.replica.visible(entity), spec);
  }

  /** A query over the replica that calls `callback` now and whenever its result changes. */
  liveQuery(entity: string, spec: QuerySpec, callback: (rows: Row[]) => void): LiveQuery {
    return new LiveQuery(this.replica, entity, spec, callback);
  }
}
