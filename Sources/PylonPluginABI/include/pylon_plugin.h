/*
 * pylon_plugin.h — the Pylon plugin ABI, version 2.
 *
 * THE contract between `pylon-host` and every plugin (SQLite/Postgres/D1 stores, auth
 * backends, the Bun function runtime, the RESP cache, shard transports, third-party
 * executors). Pure C99. A plugin is a shared library that exports exactly one symbol,
 * `pylon_plugin_entry`; everything else is reached through the tables below.
 *
 * Rules (see DESIGN.md §3):
 *  - Handshake first: the host reads `abi_major`, `struct_size` and the layout fields of
 *    the descriptor before calling anything. Major mismatch => refused (the host names the
 *    file, both versions and says to rebuild). Minor => probe, by the reading rule below.
 *  - Tables are append-only and start with `struct_size`. Slots are never reordered.
 *    READING RULE: a slot added by a later minor is read only when the table's
 *    `struct_size` covers it and it is not NULL; otherwise the reader falls back as the
 *    slot says. Flag bits a reader does not know are ignored; a caller never passes a flag
 *    newer than the other side's minor.
 *  - Buffers are (pointer, length) pairs and are NOT NUL-terminated unless stated.
 *  - Memory is freed by the side that allocated it. Every pointer below says who owns it
 *    and how long it lives ("OWNER:" / "LIFETIME:").
 *  - Errors are a status code plus a stable code and a message, both (ptr, len): the
 *    callee reports them through the caller's `pylon_error_sink` (synchronous calls) or
 *    passes a `pylon_error` to the completion callback (asynchronous ones). Nothing
 *    unwinds across this boundary (no C++ exceptions, Rust panics, Swift errors).
 *  - Thread rules are tagged on every function:
 *      [any-thread]             may be called concurrently from any thread.
 *      [one-thread-at-a-time]   may be called from any thread, never concurrently for the
 *                               same object.
 *      [may-block]              may wait without bound (network, locks held by others,
 *                               busy handlers, fsync): NEVER called on an event loop.
 *      [bounded]                completes on the calling thread using only local CPU and
 *                               local storage, and never waits for another thread, process
 *                               or the network: MAY be called on an event loop.
 *    Callbacks a plugin passes to the host, and the host's own functions, are [bounded].
 *  - Calls whose work waits on something (a child process, the network) and that the host
 *    makes from an event loop are asynchronous: they take a completion callback that is
 *    called exactly once, either before the call returns (inline) or later from any thread.
 *  - Plugins are trusted in-process code, loaded only from the `--plugins` folder with
 *    RTLD_NOW|RTLD_LOCAL|RTLD_NODELETE, and never unloaded.
 *
 * Changelog (minors after 2.0 append slots at the end of tables, under the reading rule):
 *  2.0  First release of ABI 2, replacing 1.8. Errors carry code and message as (ptr, len)
 *       (`pylon_error`, `pylon_error_sink`; no fixed `code[32]`, and function calls lose
 *       their second error channel in `result_json`). Store calls are synchronous (the
 *       asynchronous store path and PYLON_STORE_FLAG_COMPLETES_INLINE are gone: no store
 *       used them) and one `execute` slot takes a list of statements with a commit flag
 *       (replacing `execute` + `execute_batch` + `commit_batch`; PYLON_STORE_FLAG_BATCHES
 *       says that sending them together saves round trips). Host services beyond the
 *       core are looked up by versioned id through `pylon_host_v1.get_service`; the event
 *       loops are the service "pylon.host.loops/1". The [bounded] thread class, and
 *       PYLON_STORE_OPEN_READ_BOUNDED, on which PYLON_STORE_FLAG_LOCAL_READS promises
 *       [bounded] reads. Backup and restore (1.8) are plain store slots; every optional
 *       store slot may lie past a table that ends after `transaction`.
 *  2.1  PYLON_FN_WORKFLOW, a fourth function kind: a durable workflow that the host
 *       advances one step per call (see the kind's comment).
 *  2.2  `pylon_oauth_v1`, the table of the reserved capability pylon.auth.oauth/1.
 *  2.3  `pylon.files/1` (PYLON_CAP_FILES, `pylon_files_v1`): file bytes stored by a plugin,
 *       written in chunks (begin, write..., commit or abort) and read by range.
 *  2.4  `pylon.auth.code/1`: `pylon_auth_code_v1` (one-time codes and links, hashed state
 *       the host keeps, and email delivery), with `pylon_code_request`, `pylon_code_email`,
 *       PYLON_CODE_KIND_*.
 *  2.5  `pylon.shard.sim/1`: `pylon_shard_sim_v1` (a shard simulation: create, inputs, ticks,
 *       per-subscriber snapshots, authorization, optional save and restore). Several sim
 *       plugins may be served at once; each table names its sim.
 *  2.6  `pylon.shard.transport/1` (`pylon_shard_transport_v1`: a shard transport the host
 *       starts and stops, e.g. the WebSocket listener of Plugins/ShardWS) and the host
 *       service "pylon.host.shards/1" it calls (`pylon_host_shards_v1`: authenticate a
 *       token, subscribe to a shard, pull frames with a wakeup, push inputs, unsubscribe).
 *  2.7  `pylon_files_v1.list` (optional): the stored keys in pages, with size and commit time,
 *       so the host can delete bytes no file row names (the orphan sweep).
 *
 * The `abi_header_hash` line below is the FNV-1a (32-bit) hash of this file with that one
 * line removed; a host test recomputes it, so any edit of this header must update it
 * (scripts/abi-hash.py --write).
 */
#ifndef PYLON_PLUGIN_H
#define PYLON_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* Versions                                                                               */
/* ------------------------------------------------------------------------------------ */

/** Incompatible changes bump the major; the host refuses any other major. */
#define PYLON_ABI_MAJOR 2
/** Additive changes (new slots appended, new capability or service ids, new flags) bump
 *  the minor; each is listed in the changelog above. */
#define PYLON_ABI_MINOR 7
#define PYLON_ABI_HEADER_HASH 0x9faa14efu /* abi_header_hash */

/* ------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                */
/* ------------------------------------------------------------------------------------ */

/** Status returned by every fallible call. 0 is success; values are stable forever. */
typedef int32_t pylon_status;
#define PYLON_OK                    0
#define PYLON_ERR_GENERIC           1  /* anything not listed below */
#define PYLON_ERR_INVALID_ARGUMENT  2  /* bad SQL, bad parameter, bad config JSON */
#define PYLON_ERR_NOT_FOUND         3
#define PYLON_ERR_CONSTRAINT        4  /* UNIQUE / NOT NULL / CHECK / FK violated */
#define PYLON_ERR_BUSY              5  /* lock or pool timeout; retrying may succeed */
#define PYLON_ERR_IO                6  /* disk or network I/O failed */
#define PYLON_ERR_UNSUPPORTED       7  /* operation or capability not provided */
#define PYLON_ERR_CONNECTION        8  /* connection lost; the next call may reconnect */
#define PYLON_ERR_NO_MEMORY         9
#define PYLON_ERR_ABORTED          10  /* a callback asked to stop */
#define PYLON_ERR_CORRUPT          11  /* the database or a frame is corrupt */

/** A byte string. Not NUL-terminated. Owner and lifetime are given where it is used. */
typedef struct pylon_str {
    const char *ptr;
    size_t len;
} pylon_str;

/**
 * An error: the status, a short stable UPPER_SNAKE `code` (e.g. "UNIQUE_VIOLATION") and a
 * human `message`, both (ptr, len), any length, not NUL-terminated (`ptr` may be NULL when
 * `len` is 0). OWNER: whoever passes it, with the bytes it points to; valid during the call
 * it is passed to only: the receiver copies what it keeps (and may cut what it copies to
 * limits of its own). The sender sets `struct_size`.
 */
typedef struct pylon_error {
    uint32_t struct_size;
    pylon_status status;
    pylon_str code;
    pylon_str message;
} pylon_error;

/**
 * Where a synchronous call reports its error. OWNER: the caller (usually on its stack),
 * borrowed for the call. A callee that fails calls `set` at most once, before it returns,
 * with a `pylon_error` of its own (borrowed for the duration of `set`), and returns the
 * same status. `err` (the sink pointer) may be NULL: then the callee reports nothing.
 * A failure returned without `set` gets a generic code and message from the caller.
 * `set` is [bounded] and does not call back into the callee.
 */
typedef struct pylon_error_sink {
    uint32_t struct_size;
    uint32_t reserved;
    void *ctx;  /* the caller's; pass back unchanged */
    void (*set)(void *ctx, const pylon_error *err);
} pylon_error_sink;

/* ------------------------------------------------------------------------------------ */
/* Typed values (SQL parameters and result columns)                                       */
/* ------------------------------------------------------------------------------------ */

#define PYLON_VALUE_NULL   0
#define PYLON_VALUE_INT    1  /* int64 */
#define PYLON_VALUE_DOUBLE 2  /* IEEE double */
#define PYLON_VALUE_TEXT   3  /* UTF-8 bytes, not NUL-terminated */
#define PYLON_VALUE_BLOB   4  /* raw bytes */

/**
 * One typed value. `type` selects the member of `as` that is valid.
 * For TEXT and BLOB, `as.bytes` points into memory owned by whoever passed the value:
 * see the call it is passed to.
 */
typedef struct pylon_value {
    int32_t type;
    int32_t reserved; /* 0 */
    union {
        int64_t i;
        double d;
        struct {
            const uint8_t *ptr;
            size_t len;
        } bytes;
    } as;
} pylon_value;

/* ------------------------------------------------------------------------------------ */
/* Host services (passed to every plugin at create)                                       */
/* ------------------------------------------------------------------------------------ */

/** An instance created by a plugin. Opaque to the host. OWNER: the plugin. */
typedef struct pylon_instance pylon_instance;

#define PYLON_LOG_TRACE 0
#define PYLON_LOG_DEBUG 1
#define PYLON_LOG_INFO  2
#define PYLON_LOG_WARN  3
#define PYLON_LOG_ERROR 4

/**
 * The host's core function table.
 * OWNER: the host. LIFETIME: valid from `create` until after `destroy` returns; a plugin
 * may keep the pointer. All functions are [any-thread] [bounded].
 * Plugins never link against host symbols; this table is the only way in.
 */
typedef struct pylon_host_v1 {
    uint32_t struct_size;
    uint32_t abi_minor;       /* the host's PYLON_ABI_MINOR */
    void *host_ctx;           /* opaque; pass back unchanged to every function below */

    /** Log one line. `msg` is borrowed for the call only. */
    void (*log)(void *host_ctx, int32_t level, const char *msg, size_t msg_len);
    /** Wall clock, nanoseconds since the Unix epoch. */
    int64_t (*now_unix_nanos)(void *host_ctx);
    /** Monotonic clock, nanoseconds from an arbitrary origin. */
    int64_t (*monotonic_nanos)(void *host_ctx);
    /** Add `delta` to the counter `name` (borrowed for the call; created on first use). */
    void (*counter_add)(void *host_ctx, const char *name, size_t name_len, int64_t delta);
    /** Set the gauge `name` (borrowed for the call; created on first use). */
    void (*gauge_set)(void *host_ctx, const char *name, size_t name_len, double value);
    /**
     * Reach the capability `capability_id` (NUL-terminated, e.g. "pylon.store/1") as the
     * host has selected it for this app — served by another plugin, or NULL when it is
     * absent or stubbed. On success `*instance_out` receives the serving plugin's instance,
     * to be passed as the first argument of the returned table's functions.
     * LIFETIME: both pointers stay valid until the host shuts down.
     */
    const void *(*get_capability)(void *host_ctx, const char *capability_id,
                                  pylon_instance **instance_out);
    /**
     * The table of the optional host service `service_id` (NUL-terminated, versioned, e.g.
     * PYLON_SERVICE_LOOPS), or NULL when this host does not offer it. The table starts with
     * uint32_t struct_size and follows the reading rule. OWNER: the host. LIFETIME: as this
     * table's.
     */
    const void *(*get_service)(void *host_ctx, const char *service_id);
} pylon_host_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.host.loops/1 — the host's event loops (an optional host service)                */
/* ------------------------------------------------------------------------------------ */

/** Service id of `pylon_host_loops_v1`. */
#define PYLON_SERVICE_LOOPS "pylon.host.loops/1"

/**
 * The host's event loops. They let a plugin that talks to child processes or sockets have
 * its reads done by the loops that serve the HTTP connections, instead of by threads of its
 * own: a reply then reaches the host on the thread that will answer the request, with no
 * thread hand-off in between. OWNER: the host; LIFETIME: as `pylon_host_v1`.
 * Every function is [any-thread] [bounded].
 */
typedef struct pylon_host_loops_v1 {
    uint32_t struct_size;
    uint32_t reserved;
    void *ctx;  /* opaque; pass back unchanged to every function below */

    /** How many event loops the host runs (>= 1). */
    int32_t (*loop_count)(void *ctx);
    /** The index (0 ..< loop_count) of the event loop running the calling thread, or -1
     *  when the caller is not on one. A plugin may use it to keep a request's work on the
     *  loop it arrived on (e.g. pick the child whose fd that loop watches). */
    int32_t (*current_loop)(void *ctx);
    /**
     * Have one event loop read `fd` (a pipe's read end or a connected stream socket).
     * OWNERSHIP of `fd` passes to the host on success: it makes the fd non-blocking and
     * closes it after `on_close`; the plugin must not read or close it any more. On failure
     * (NULL: not a pipe or a socket) the fd stays the plugin's, unchanged, and the plugin
     * reads it itself. A registration that fails after `watch_fd` returned is reported as
     * `on_close(PYLON_ERR_IO)` (the host has closed the fd).
     * `loop` picks the loop (taken modulo `loop_count`; -1: any).
     * `on_data(cb_ctx, bytes, len)` runs on that loop's thread each time bytes arrive, in
     * order; `bytes` is OWNED BY THE HOST, valid during the callback only.
     * `on_close(cb_ctx, status)` runs exactly once, on the same thread, after the last
     * `on_data`: at end of file (PYLON_OK), a read error (PYLON_ERR_IO) or after
     * `unwatch_fd` (PYLON_ERR_ABORTED). `cb_ctx` must stay valid until `on_close` returns.
     * Both callbacks run ON AN EVENT LOOP: they must be [bounded] (no waiting for a child,
     * no blocking write); work that waits belongs on a thread of the plugin's own.
     * Returns a handle OWNED BY THE PLUGIN until it passes it to `unwatch_fd`, which it
     * must do exactly once, before or after `on_close`.
     */
    void *(*watch_fd)(void *ctx, int32_t fd, int32_t loop,
                      void (*on_data)(void *cb_ctx, const uint8_t *bytes, size_t len),
                      void (*on_close)(void *cb_ctx, pylon_status status), void *cb_ctx);
    /** Give the handle back: reading stops (`on_close` follows with PYLON_ERR_ABORTED if
     *  it has not run yet) and `handle` is invalid once this returns. Exactly once per
     *  handle, from any thread but never from inside its own callbacks. */
    void (*unwatch_fd)(void *ctx, void *handle);
} pylon_host_loops_v1;

/* ------------------------------------------------------------------------------------ */
/* The plugin descriptor and the one entry symbol                                        */
/* ------------------------------------------------------------------------------------ */

/**
 * What `pylon_plugin_entry` returns.
 * OWNER: the plugin; static, constant, valid for the life of the process.
 * The first four fields keep their place in every major (so any host can read and refuse
 * any plugin); the host reads them and the layout fields before anything else.
 */
typedef struct pylon_plugin_descriptor {
    uint32_t struct_size;     /* sizeof(pylon_plugin_descriptor) as the plugin compiled it */
    uint32_t abi_major;       /* PYLON_ABI_MAJOR */
    uint32_t abi_minor;       /* PYLON_ABI_MINOR */
    uint32_t abi_header_hash; /* PYLON_ABI_HEADER_HASH; a mismatch is reported, not refused */

    /* Layout check: each is sizeof() of the named type as the plugin compiled it. */
    uint32_t sizeof_pointer;
    uint32_t sizeof_value;    /* pylon_value */
    uint32_t sizeof_error;    /* pylon_error */
    uint32_t sizeof_host;     /* pylon_host_v1 the plugin was built against */

    /** Reverse-DNS-ish unique id, e.g. "pylon.store.sqlite". NUL-terminated, static. */
    const char *plugin_id;
    /** Free-form version, e.g. "0.1.0". NUL-terminated, static. */
    const char *plugin_version;
    /** One line for `pylon-host plugins`. NUL-terminated, static; may be NULL. */
    const char *description;
    /** Capability ids this plugin provides; `capability_count` entries, static. */
    const char *const *capabilities;
    uint32_t capability_count;
    uint32_t reserved0;

    /**
     * Create an instance. No work may happen before this (no constructors).
     * `host`: OWNER host, valid until after `destroy`. `config_json`: the plugin's config
     * object from the manifest (`plugins.<capability>` minus "use"), borrowed for the call.
     * On failure return non-zero, report through `err`, leave `*out` NULL.
     * [one-thread-at-a-time] [may-block]
     */
    pylon_status (*create)(const pylon_host_v1 *host, const char *config_json,
                           size_t config_len, pylon_instance **out, const pylon_error_sink *err);
    /** Destroy an instance created by `create`; its interfaces become invalid. [may-block] */
    void (*destroy)(pylon_instance *instance);
    /**
     * The interface table for `capability_id` (NUL-terminated), or NULL if not provided.
     * The table starts with uint32_t struct_size. LIFETIME: until `destroy`.
     * [any-thread] [bounded]
     */
    const void *(*get_interface)(pylon_instance *instance, const char *capability_id);
} pylon_plugin_descriptor;

/** Name of the one exported symbol. */
#define PYLON_PLUGIN_ENTRY_SYMBOL "pylon_plugin_entry"

/** Type of the one exported symbol: `const pylon_plugin_descriptor *pylon_plugin_entry(void)`.
 *  Must be cheap, side-effect free and callable more than once. */
typedef const pylon_plugin_descriptor *(*pylon_plugin_entry_fn)(void);

/* ------------------------------------------------------------------------------------ */
/* Capability ids                                                                         */
/* ------------------------------------------------------------------------------------ */
/* A table's type name carries its capability's version (`pylon.store/1` is served by a
 * `pylon_store_v1`); capability versions count within one ABI major. */

/** SQL executor with transactions: `pylon_store_v1` below. */
#define PYLON_CAP_STORE            "pylon.store/1"
/** TypeScript server functions (query/mutation/action), asynchronous: `pylon_fn_v1` below. */
#define PYLON_CAP_FUNCTIONS        "pylon.functions/1"
/* Reserved; their tables are defined by the issues that fill them.                     */
/** One-time email codes and links: issue, check, deliver: `pylon_auth_code_v1` below. */
#define PYLON_CAP_AUTH_CODE        "pylon.auth.code/1"
/** OAuth 2 / OIDC providers: authorize URL, code exchange, identity: `pylon_oauth_v1` (2.2). */
#define PYLON_CAP_AUTH_OAUTH       "pylon.auth.oauth/1"
/** Redis-compatible cache and pub/sub: `pylon_cache_v1` below. */
#define PYLON_CAP_CACHE            "pylon.cache/1"
/** (2.6) A shard transport (the shard WebSocket listener): `pylon_shard_transport_v1` below;
 *  it reaches the shards through the host service PYLON_SERVICE_SHARDS. */
#define PYLON_CAP_SHARD_TRANSPORT  "pylon.shard.transport/1"
/** (2.5) A shard simulation (the game logic): `pylon_shard_sim_v1` below. Unlike the other
 *  capabilities, every loaded plugin that provides it is served, each under its sim name. */
#define PYLON_CAP_SHARD_SIM        "pylon.shard.sim/1"
/** (2.3) File bytes (uploads), streamed in and read by range: `pylon_files_v1` below. */
#define PYLON_CAP_FILES            "pylon.files/1"
/** CRDT documents for fields marked `crdt: "text"` etc. (reserved: until a plugin serves
 *  it such fields are stored and synced as ordinary values). */
#define PYLON_CAP_CRDT             "pylon.crdt/1"

/* ------------------------------------------------------------------------------------ */
/* pylon.store/1 — a SQL executor                                                         */
/* ------------------------------------------------------------------------------------ */
/*
 * The host owns the data model: it generates every statement for the store's declared
 * dialect, with values always bound as parameters. A store only executes. Every store call
 * is synchronous: it completes on the calling thread before it returns. The host makes
 * [may-block] calls from its store threads only; the one [bounded] call is `execute` of a
 * read on a PYLON_STORE_OPEN_READ_BOUNDED connection, which the host may make on an event
 * loop.
 */

/** A connection. Opaque to the host. OWNER: the plugin; freed by `close`.
 *  [one-thread-at-a-time]: the host never starts a call on a connection before the
 *  previous call on it has returned. */
typedef struct pylon_store_conn pylon_store_conn;

/** Connection modes for `open`. */
#define PYLON_STORE_OPEN_READ  1  /* reads only; may be served by a replica or reader */
#define PYLON_STORE_OPEN_WRITE 2  /* reads and writes; transactions */
/** Reads only, for quick point reads the host runs on its event loops: `execute` of a
 *  read on it is [bounded] — the store never waits there (no busy handler, no lock wait:
 *  a lock held by another connection fails at once with PYLON_ERR_BUSY, code "BUSY", and
 *  the host retries the read on a PYLON_STORE_OPEN_READ connection). Opened only on a
 *  store with PYLON_STORE_FLAG_LOCAL_READS; the host sends it only short reads (a few
 *  rows by key), never a transaction. */
#define PYLON_STORE_OPEN_READ_BOUNDED 3

/** Transaction operations for `transaction`. */
#define PYLON_TX_BEGIN          1  /* start a write transaction (takes the write lock now) */
#define PYLON_TX_COMMIT         2
#define PYLON_TX_ROLLBACK       3
#define PYLON_TX_BEGIN_READ     4  /* start a read snapshot */

/** Store flags (`pylon_store_v1.flags`). Bit 0x1 is retired (1.x's COMPLETES_INLINE). */
/** Several connections may write at once (the database serializes them itself). */
#define PYLON_STORE_FLAG_CONCURRENT_WRITERS 0x2u
/**
 * Statements that change data inside a write transaction are buffered and applied at
 * COMMIT, all or nothing (e.g. a store that sends them to a remote database as one batch).
 * Until COMMIT they complete at once with no rows and rows_affected 0, and reads in the
 * transaction see only committed data. SAVEPOINT / RELEASE / ROLLBACK TO must still be
 * honoured (by dropping the statements buffered since the savepoint). Constraint violations
 * surface at COMMIT. The host then never relies on RETURNING or on reading its own writes
 * inside a transaction, assigns change-log numbers itself, and runs one write job per
 * transaction. Outside a transaction every statement runs at once.
 */
#define PYLON_STORE_FLAG_DEFERRED_WRITES 0x4u
/**
 * Reads are served from local storage in microseconds (an embedded database on this
 * machine), and the store supports PYLON_STORE_OPEN_READ_BOUNDED: its promise is that
 * `execute` of a read on such a connection is [bounded]. The host then runs point reads
 * inline on the event loop that handles the request instead of handing them to a store
 * thread. Never set it for a store that talks over a network.
 */
#define PYLON_STORE_FLAG_LOCAL_READS 0x8u
/**
 * Several statements in one `execute` cost about what one costs (a store with network
 * round trips that pipelines them). The host then queues the statements of a write
 * transaction whose results it does not need and sends them together, with COMMIT
 * (PYLON_EXEC_COMMIT); without the flag it sends each statement as it comes.
 */
#define PYLON_STORE_FLAG_BATCHES 0x10u

/**
 * Receives a statement's result rows.
 * OWNER: the host; borrowed for the duration of the `execute` call.
 * The plugin calls `columns` once (before any row, also when there are no rows), then
 * `row` once per row, on the calling thread, before `execute` returns.
 * Names and values passed to the callbacks are OWNED BY THE PLUGIN and valid only during
 * that callback: the host copies what it keeps. A non-zero return stops the statement,
 * which then fails with PYLON_ERR_ABORTED.
 */
typedef struct pylon_row_sink {
    uint32_t struct_size;
    void *ctx;
    pylon_status (*columns)(void *ctx, const pylon_str *names, size_t count); /* may be NULL */
    pylon_status (*row)(void *ctx, const pylon_value *values, size_t count);  /* may be NULL */
} pylon_row_sink;

/** Summary of a finished `execute`. OWNER: the host (the caller); the store fills it on
 *  success and leaves fields past the `struct_size` the host set untouched. */
typedef struct pylon_exec_result {
    uint32_t struct_size;
    uint32_t reserved;
    int64_t rows_affected;   /* INSERT/UPDATE/DELETE; 0 for queries */
    int64_t last_insert_id;  /* 0 where the dialect has none */
} pylon_exec_result;

/** One statement of an `execute` call. OWNER: the host; the struct, `sql`, `params` and the
 *  bytes they point to are borrowed for the call. */
typedef struct pylon_statement {
    const char *sql;           /* NUL-terminated; `sql_len` excludes the NUL */
    size_t sql_len;
    const pylon_value *params; /* positional parameters ("?" for sqlite, "$1".. for postgres) */
    size_t param_count;
} pylon_statement;

/** `execute` flags. */
/** After the statements, COMMIT the connection's open write transaction, in the same call
 *  (Postgres: one pipeline ending in COMMIT, one round trip for the whole transaction). */
#define PYLON_EXEC_COMMIT 0x1u

/** The `pylon.store/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_store_v1 {
    uint32_t struct_size;
    uint32_t flags;           /* PYLON_STORE_FLAG_* */
    /** SQL dialect the host must generate: "sqlite" or "postgres". Static, NUL-terminated. */
    const char *dialect;
    /** Suggested number of read connections (the host may open fewer). */
    uint32_t max_readers;
    uint32_t reserved;

    /**
     * Open a connection in `mode` (PYLON_STORE_OPEN_*). [any-thread] [may-block]
     * On success `*out` is a new connection the host must `close`.
     */
    pylon_status (*open)(pylon_instance *instance, int32_t mode, pylon_store_conn **out,
                         const pylon_error_sink *err);
    /** Close a connection; rolls back an open transaction. [one-thread-at-a-time] [may-block] */
    void (*close)(pylon_store_conn *conn);

    /**
     * Execute `count` statements in order, as one call: a store with network round trips
     * sends them together (Postgres: one pipeline). There is no separate single-statement
     * slot: one statement is a list of one, and the host's reads are exactly that.
     * Only the last statement's rows go to `sink` (may be NULL: rows not wanted); the
     * others' are dropped. On success `result` (may be NULL) gets the last statement's
     * `rows_affected` and `last_insert_id`.
     * `count` > 1 only inside a transaction opened by `transaction`. Stops at the first
     * statement that fails and returns its error; the transaction is then left failed (the
     * host rolls back), and which statements before it took effect does not matter.
     * With PYLON_EXEC_COMMIT (`flags`) the open write transaction is committed after the
     * statements (`count` may then be 0: a plain COMMIT); on failure nothing was committed
     * and, as after a failed COMMIT, no transaction is left open (the store rolled back).
     * [one-thread-at-a-time per connection] [may-block]; [bounded] for a read on a
     * PYLON_STORE_OPEN_READ_BOUNDED connection.
     */
    pylon_status (*execute)(pylon_store_conn *conn, const pylon_statement *statements, size_t count,
                            uint32_t flags, const pylon_row_sink *sink, pylon_exec_result *result,
                            const pylon_error_sink *err);

    /**
     * Begin, commit or roll back (PYLON_TX_*). A failed COMMIT leaves no transaction open
     * (the store rolls back). [one-thread-at-a-time per connection] [may-block]
     */
    pylon_status (*transaction)(pylon_store_conn *conn, int32_t op, const pylon_error_sink *err);

    /**
     * One line saying where the data lives, for the host's startup log, e.g.
     * "D1 database 0f3c... via https://api.cloudflare.com/client/v4". Never contains secrets.
     * Writes at most `cap` bytes including a terminating NUL into `buf` (OWNER: the host) and
     * returns the length without the NUL. [any-thread] [bounded]
     * Optional (this slot and every one after it: NULL, or past `struct_size`) => the host
     * logs the config's `path`.
     */
    size_t (*describe)(pylon_instance *instance, char *buf, size_t cap);

    /**
     * Block until the database signals `channel` (NUL-terminated, borrowed for the call) or
     * `timeout_ms` passes. The first call subscribes `conn` to the channel (Postgres:
     * LISTEN); signals that arrived since the previous call count, several collapse into
     * one. Returns PYLON_OK when signalled, PYLON_ERR_BUSY on timeout, another status (with
     * `err` set) when the connection failed. Signals sent by this instance's own
     * connections may be left out (the host hands its own commits to its subscribers
     * itself; Postgres tells them apart by the sender's server process id). The host uses a
     * connection it dedicates to waiting, from one thread. [one-thread-at-a-time] [may-block]
     * Optional: NULL => the host polls the change log instead.
     */
    pylon_status (*wait_notify)(pylon_store_conn *conn, const char *channel, int32_t timeout_ms,
                                const pylon_error_sink *err);

    /* Backup and restore: the store owns its storage, so it makes and restores backups
     * (`pylon-host backup` / `pylon-host restore`). Both are called from the CLI's own
     * thread, never from an event loop or a store thread, and never while the same process
     * serves requests. */

    /**
     * Write a consistent copy of the whole database to the file `path` (NUL-terminated,
     * OWNED BY THE HOST, borrowed for the call), while other processes (serving hosts) may
     * keep reading and writing it. The copy is one point in time. The file appears at
     * `path` only when complete (a failed backup leaves no file there); an existing file is
     * replaced. The format is the store's own (SQLite: a database file; Postgres:
     * `pg_dump` custom format) and is read back only by the same store's `restore`.
     * Returns PYLON_OK, or a status with `err` set (PYLON_ERR_UNSUPPORTED when this store
     * cannot make backups, the message saying what to use instead).
     * [one-thread-at-a-time] [may-block]: it may take minutes on a large database.
     * Optional: NULL => the host answers "this store plugin does not support backup".
     */
    pylon_status (*backup)(pylon_instance *instance, const char *path, const pylon_error_sink *err);

    /**
     * Replace the whole database with the backup in the file `path` (NUL-terminated, OWNED
     * BY THE HOST, borrowed for the call), then run `after_sql` on the restored data before
     * it becomes visible: `after_len` bytes of SQL in the store's dialect, OWNED BY THE
     * HOST, borrowed for the call, not NUL-terminated, possibly several statements separated
     * by ';', no parameters (the host uses it to give the restored database a new change-log
     * epoch). All or nothing: when the file is missing, damaged, of another store's format,
     * or `after_sql` fails, the live database is left exactly as it was and `err` says why
     * (PYLON_ERR_CORRUPT for a file that is not a usable backup). A store that can tell that
     * another process is serving the database refuses with PYLON_ERR_BUSY (code
     * "DATABASE_IN_USE") rather than change data under it.
     * [one-thread-at-a-time] [may-block].
     * Optional: NULL => the host answers "this store plugin does not support backup".
     */
    pylon_status (*restore)(pylon_instance *instance, const char *path, const char *after_sql,
                            size_t after_len, const pylon_error_sink *err);
} pylon_store_v1;

/** The smallest store table a host accepts: the required slots (up to `transaction`). The
 *  optional slots after them follow the reading rule, so a table may end before them. */
#define PYLON_STORE_V1_MIN_SIZE (offsetof(pylon_store_v1, describe))

/* ------------------------------------------------------------------------------------ */
/* pylon.functions/1 — server functions (query / mutation / action), asynchronous       */
/* ------------------------------------------------------------------------------------ */
/*
 * The plugin runs app functions (e.g. TypeScript under Bun); the HOST owns the database:
 * every `ctx.db` operation a function makes comes back to the host through
 * `pylon_fn_host_v1.db_call`, and the host runs it with its own data service and policies
 * — inside the call's write transaction for a mutation (one transaction per mutation,
 * committed or rolled back as a whole, change events published after commit), on read
 * connections for a query, each operation on its own for an action. The plugin never
 * sees SQL, transactions or the change log.
 *
 * A call: the host `describe`s the function (kind, flags), then `start_call`s it; the
 * plugin answers any number of `db_call`s and `stream` chunks, then exactly one
 * `complete`. JSON documents cross the boundary as UTF-8 (ptr, len), never NUL-terminated.
 */

/** Function kinds (`pylon_fn_info.kind`, `pylon_fn_call.kind`). */
#define PYLON_FN_QUERY    1  /* reads only; runs concurrently on read connections */
#define PYLON_FN_MUTATION 2  /* one write transaction per call */
#define PYLON_FN_ACTION   3  /* no transaction; each db operation stands alone */
/** (2.1) A durable workflow. The host calls it like an action (db operations stand alone,
 *  it may run other functions) with args {"workflow_id", "input", "steps": [{"name",
 *  "output"}]} — the steps completed so far, in order — and the plugin replays the
 *  workflow up to its first step not in that list, then returns what happens next: a
 *  JSON object with "action" one of "step_complete" ({"step_name", "output",
 *  "duration_ms"}), "sleep" ({"duration_ms"}), "wait_event" ({"event"}), "complete"
 *  ({"output"}) or "fail" ({"step_name", "error"}). The host records it and calls again
 *  for the next step; it never starts a workflow call from `/api/fn` or a job. */
#define PYLON_FN_WORKFLOW 4

/** Function flags (`pylon_fn_info.flags`). A function's `ctx.db` operations bypass the
 *  manifest's policies (it is the app's trusted code, as in Pylon), unless the app asks
 *  for policies on function calls (manifest `plugins.functions.policies: "enforce"`) or
 *  the function does; the caller's identity is passed as `ctx.auth` either way. */
/** Declared `privileged: true` (or `policies: "trusted"`): bypasses policies even in an
 *  app that enforces them. */
#define PYLON_FN_FLAG_PRIVILEGED 0x1u
/** Declared `policies: "enforce"`: its `ctx.db` operations obey the caller's
 *  policies whatever the app's setting. Wins over PYLON_FN_FLAG_PRIVILEGED. */
#define PYLON_FN_FLAG_ENFORCE_POLICIES 0x2u

/** What `describe` reports about one function. OWNER: the caller (host), filled by the
 *  plugin; the caller sets `struct_size`. */
typedef struct pylon_fn_info {
    uint32_t struct_size;
    int32_t kind;    /* PYLON_FN_* */
    uint32_t flags;  /* PYLON_FN_FLAG_* */
    uint32_t reserved;
} pylon_fn_info;

/**
 * One call, as the host starts it. OWNER: the host; every pointer (and the bytes behind
 * it) is borrowed for the duration of `start_call` only: the plugin copies what it keeps.
 */
typedef struct pylon_fn_call {
    uint32_t struct_size;
    int32_t kind;          /* the kind `describe` reported; a mismatch fails the call */
    uint64_t call_id;      /* unique per host process; for logs and correlation */
    pylon_str name;        /* function name */
    pylon_str args_json;   /* the arguments: a JSON value (normally an object) */
    /** The caller: {"user_id": string|null, "is_admin": bool, "is_guest": bool,
     *  "roles": [string], "tenant_id": string|null}. */
    pylon_str auth_json;
    /** Opaque host pointer identifying the call; passed back unchanged to every
     *  `pylon_fn_host_v1` function for this call. Valid until `complete` returns. */
    void *call_ctx;
    /** For a webhook call
     *  (`/api/webhooks/NAME`, always an action) the HTTP request: {"method", "path" (with
     *  the query string), "headers": {lowercased name: value, repeated headers joined
     *  with ", "}, "raw_body": string}, which the function sees as `ctx.request`. Empty
     *  (len 0) for every other call. */
    pylon_str request_json;
} pylon_fn_call;

/**
 * Reply to one `db_call` or `run_fn`. Called exactly once per request, inline or later,
 * from any host thread. On success `status` is PYLON_OK and `result_json` is the operation's
 * result (a JSON value) with `err` NULL; on failure `result_json` is NULL and `err` says
 * why (`code` e.g. "POLICY_DENIED", "NOT_FOUND", "SEARCH_REQUIRES_ROW_INDEPENDENT_POLICY").
 * Both are OWNED BY THE HOST and valid during the callback only. The callback must be
 * [bounded] (hand the reply to a thread of the plugin's own if it has to wait).
 */
typedef void (*pylon_fn_db_done_fn)(void *done_ctx, pylon_status status, const char *result_json,
                                    size_t result_len, const pylon_error *err);

/**
 * The host's side of `pylon.functions/1`, handed to the plugin by `bind_host` right after
 * `create`. OWNER: the host. LIFETIME: until after the plugin instance is destroyed.
 * Every function is [any-thread] [bounded]: it returns without waiting on the database
 * (work that takes time completes through the callback).
 */
typedef struct pylon_fn_host_v1 {
    uint32_t struct_size;
    uint32_t reserved;
    void *host_ctx;  /* opaque; pass back unchanged */

    /**
     * Run one `ctx.db` or `ctx.scheduler` operation for the call `call_ctx`. `op_json`
     * (borrowed for the call) is an object {"op", "entity", "id"?, "data"?, "field"?,
     * "value"?, "after"?, "limit"?, "relation"?, "target_id"?, "fn_name"?, "args"?,
     * "delay_ms"?, "run_at"?, "schedule_id"?} with op one of get, list, query, lookup,
     * paginate, search, query_graph, insert, update, delete, link, unlink, schedule,
     * cancel_schedule (Pylon's `db` frame; results as in Pylon: a row or null, rows,
     * {"hits","facetCounts","total","tookMs"} for search (data = the search body),
     * {"<Entity>": [row]} for query_graph (entity "", data = the graph query), {"id"},
     * {"updated"}, {"deleted"}, {"linked"}, {"unlinked"}, {"scheduled","id"}, {"cancelled"}).
     * The host applies the caller's policies unless the function is privileged. `done` is
     * called exactly once, possibly before `db_call` returns. After `complete` for the
     * call the plugin must not call `db_call` for it again.
     */
    void (*db_call)(void *host_ctx, void *call_ctx, const char *op_json, size_t op_len,
                    pylon_fn_db_done_fn done, void *done_ctx);
    /**
     * One streamed chunk of the call's response (`ctx.stream`). `event` may be empty.
     * Both buffers are borrowed for the call. Never after `complete`.
     */
    void (*stream)(void *host_ctx, void *call_ctx, const char *event, size_t event_len,
                   const char *data, size_t data_len);
    /**
     * Finish the call: exactly once per started call, from any plugin thread. On success
     * `status` is PYLON_OK, `result_json` is the function's return value (a JSON value)
     * and `err` is NULL; on failure `result_json` is NULL and `err` holds the stable code
     * (e.g. "INVALID_ARGS", "FUNCTION_TIMEOUT", "WORKER_CRASHED", or the function's own
     * code, any length) and the message. Buffers are OWNED BY THE PLUGIN and valid during
     * the call only. After it returns, `call_ctx` is invalid.
     */
    void (*complete)(void *host_ctx, void *call_ctx, pylon_status status, const char *result_json,
                     size_t result_len, const pylon_error *err);
    /**
     * Run another function for the call `call_ctx` (`ctx.runQuery` / `ctx.runMutation` in
     * an action). `name` and `args_json` are borrowed for the call; `kind` (PYLON_FN_*) is
     * what the caller expects, a mismatch fails with "FN_TYPE_MISMATCH". The nested call
     * runs as the caller's user with admin rights dropped (as in Pylon), a mutation in its
     * own transaction, and may land on any worker. `done` receives its return value (JSON)
     * or its error, exactly once, from any thread. Only an action may do this; for a query or
     * mutation the host answers "NESTED_CALL_NOT_ALLOWED". Never after `complete`.
     */
    void (*run_fn)(void *host_ctx, void *call_ctx, const char *name, size_t name_len, int32_t kind,
                   const char *args_json, size_t args_len, pylon_fn_db_done_fn done, void *done_ctx);
} pylon_fn_host_v1;

/**
 * Receives a JSON document produced by the plugin (see `list`). `json` is OWNED BY THE
 * PLUGIN and valid during the callback only.
 */
typedef void (*pylon_fn_json_fn)(void *ctx, const char *json, size_t json_len);

/** The `pylon.functions/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_fn_v1 {
    uint32_t struct_size;
    uint32_t reserved;

    /**
     * Hand the plugin the host's side of the interface. Called once, after `create` and
     * before any other function of this table. `host` stays valid until after `destroy`.
     * [one-thread-at-a-time] [may-block]
     */
    pylon_status (*bind_host)(pylon_instance *instance, const pylon_fn_host_v1 *host,
                              const pylon_error_sink *err);
    /**
     * Kind and flags of the function `name` (borrowed for the call). PYLON_ERR_NOT_FOUND
     * (code "FN_NOT_FOUND") when there is none; PYLON_ERR_UNSUPPORTED when the runtime is
     * not available (e.g. Bun is not installed; the message says how to install it).
     * [any-thread] [bounded]
     */
    pylon_status (*describe)(pylon_instance *instance, const char *name, size_t name_len,
                             pylon_fn_info *out, const pylon_error_sink *err);
    /**
     * Calls `cb` once, before returning, with a JSON array describing every function:
     * [{"name", "fn_type": "query"|"mutation"|"action"|"workflow", "args_schema": object|null,
     * "privileged": bool}]; a workflow may add "description" and "max_retries".
     * [any-thread] [bounded]
     */
    void (*list)(pylon_instance *instance, pylon_fn_json_fn cb, void *ctx);
    /**
     * Start a call. Returns at once. On PYLON_OK the plugin later calls
     * `host->complete(call->call_ctx, ...)` exactly once (possibly before `start_call`
     * returns). On any other status the call did not start, `complete` is never called
     * for it, and `err` says why. [any-thread] [bounded]
     */
    pylon_status (*start_call)(pylon_instance *instance, const pylon_fn_call *call,
                               const pylon_error_sink *err);
} pylon_fn_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.cache/1 — a Redis-compatible cache and pub/sub broker                           */
/* ------------------------------------------------------------------------------------ */
/*
 * The plugin owns the keyspace and the pub/sub broker and normally serves RESP itself,
 * on its own port and threads. The host reaches the same store for its HTTP routes
 * (/api/cache, /api/pubsub) by running commands through `command`, and hears every
 * published message (from RESP clients or from `command`) through the one listener it
 * registers, to relay it to WebSocket subscribers of that topic.
 * Commands, arguments and replies are Redis's: the reply is one RESP3 value, which the
 * host decodes (RESP3 keeps maps, doubles, booleans and nulls apart).
 */

/**
 * Completion of `command`. Called exactly once per call, inline or later from any plugin
 * thread. When the command ran, `status` is PYLON_OK, `err` is NULL and `reply` holds
 * exactly one RESP3-encoded value (a Redis error reply is a RESP3 simple error such as
 * "-WRONGTYPE ...\r\n" and still has status PYLON_OK). Otherwise `status` is non-zero,
 * `err` says why and `reply` is NULL.
 * `reply` and `err` are OWNED BY THE PLUGIN and valid during the callback only: the host
 * copies what it keeps. The callback must not block; it may call `command` again.
 */
typedef void (*pylon_cache_reply_fn)(void *done_ctx, pylon_status status,
                                     const uint8_t *reply, size_t reply_len,
                                     const pylon_error *err);

/**
 * Receives every message published on any channel, after the plugin's own subscribers
 * got it. `channel` and `message` are OWNED BY THE PLUGIN and valid during the call only.
 * Called from a plugin thread, one call at a time, in publish order; it must return
 * quickly (hand the message off) and must not wait for a `command` reply.
 */
typedef void (*pylon_cache_message_fn)(void *ctx, const uint8_t *channel, size_t channel_len,
                                       const uint8_t *message, size_t message_len);

/** The `pylon.cache/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_cache_v1 {
    uint32_t struct_size;
    uint32_t flags;           /* 0; reserved for PYLON_CACHE_FLAG_* */

    /**
     * Runs one command; `argv[0]` is its name (any case), e.g. {"SET","k","v","EX","10"}.
     * `argv` and the bytes it points to are OWNED BY THE HOST and need to stay valid only
     * until `command` returns (the plugin copies them). The command runs as a privileged
     * internal client (no AUTH needed, RESP3 replies). Commands that need a connection of
     * their own (SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, MULTI, EXEC, AUTH, HELLO, CLIENT, QUIT,
     * RESET) are answered with an error reply. `done` follows `pylon_cache_reply_fn`.
     * [any-thread] [bounded]: never waits for other clients' work.
     */
    void (*command)(pylon_instance *instance, const pylon_str *argv, size_t argc,
                    pylon_cache_reply_fn done, void *done_ctx);

    /**
     * Registers the one message listener (replacing any earlier one); `fn` NULL removes
     * it. `ctx` is OWNED BY THE HOST and must stay valid until the listener is replaced or
     * removed, or the instance destroyed; after this call returns the old listener is
     * not called again. [any-thread] [bounded]
     */
    void (*set_message_listener)(pylon_instance *instance, pylon_cache_message_fn fn,
                                 void *ctx);

    /** The TCP port the RESP server listens on, or 0 when it has no listener.
     *  [any-thread] [bounded] */
    int32_t (*resp_port)(pylon_instance *instance);
} pylon_cache_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.auth.oauth/1 — OAuth 2 / OpenID Connect providers (2.2)                          */
/* ------------------------------------------------------------------------------------ */
/*
 * The plugin owns the conversation with the identity providers and their secrets: the
 * provider registry (client ids and secrets, endpoints, OIDC discovery), authorization
 * URLs, the code exchange, id_token verification (signature against the provider's JWKS,
 * iss, aud, exp, nonce), userinfo and token refresh. The HOST owns everything else: the
 * state token, PKCE verifier and nonce (it makes them and keeps them, bound to the
 * browser), users, account links, sessions, cookies and the HTTP routes. Requests and
 * answers are JSON documents, UTF-8, (ptr, len), never NUL-terminated.
 */

/**
 * Completion of an OAuth request. Called exactly once per request, inline or later, from
 * any plugin thread; it must be [bounded]. On PYLON_OK `json` is the answer and `err` is
 * NULL; otherwise `json` is NULL and `err` says why, with a stable code such as
 * "PROVIDER_NOT_FOUND", "OAUTH_TOKEN_EXCHANGE_FAILED", "OAUTH_ID_TOKEN_INVALID",
 * "OAUTH_PROVIDER_UNREACHABLE", "NO_REFRESH_TOKEN", "REFRESH_FAILED"; messages carry no
 * secret (client secrets, codes, verifiers and tokens are redacted). `json` and `err` are
 * OWNED BY THE PLUGIN and valid during the callback only.
 */
typedef void (*pylon_oauth_done_fn)(void *done_ctx, pylon_status status, const char *json, size_t json_len,
                                    const pylon_error *err);

/** The `pylon.auth.oauth/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_oauth_v1 {
    uint32_t struct_size;
    uint32_t reserved;

    /**
     * The configured providers, sorted by id: calls `done` once, before returning, with
     * [{"provider", "name", "pkce": bool, "oidc": bool}]. [any-thread] [bounded]
     */
    void (*providers)(pylon_instance *instance, pylon_oauth_done_fn done, void *done_ctx);
    /**
     * The authorization URL. `request_json` (borrowed for the call): {"provider", "state",
     * "nonce", "code_challenge" (S256 of the host's verifier), "redirect_uri"? (the host's callback
     * route, used when the provider has no configured redirect)}; the answer is {"url"}. The plugin adds the challenge for every provider that accepts PKCE and the
     * nonce for OIDC ones. May fetch the provider's discovery document first. [any-thread]
     * [bounded]: returns at once; the work happens on the plugin's threads.
     */
    void (*authorize)(pylon_instance *instance, const char *request_json, size_t request_len,
                      pylon_oauth_done_fn done, void *done_ctx);
    /**
     * Exchanges a code. `request_json` (borrowed): {"provider", "code", "code_verifier",
     * "nonce", "redirect_uri"?}; the answer is the normalized identity {"provider",
     * "subject", "email" (string|null), "email_verified": bool, "name" (string|null),
     * "tokens": {"access_token", "refresh_token"?, "id_token"?, "expires_at"? (Unix
     * seconds), "scope"?}}. An id_token that fails verification fails the exchange.
     * [any-thread] [bounded]
     */
    void (*exchange)(pylon_instance *instance, const char *request_json, size_t request_len,
                     pylon_oauth_done_fn done, void *done_ctx);
    /**
     * Refreshes tokens. `request_json` (borrowed): {"provider", "refresh_token"}; the answer
     * is {"access_token", "refresh_token"? (absent: keep the old one), "expires_at"?,
     * "scope"?}. [any-thread] [bounded]
     */
    void (*refresh)(pylon_instance *instance, const char *request_json, size_t request_len,
                    pylon_oauth_done_fn done, void *done_ctx);
} pylon_oauth_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.files/1 — file bytes (uploads), streamed (2.3)                                   */
/* ------------------------------------------------------------------------------------ */
/*
 * The plugin stores bytes under keys it chooses; the HOST owns everything else: the file
 * rows (`_pylon_files`: owner, name, content type, size, sha256), access rules, signed URLs
 * and the HTTP routes. A key never comes from a client: the host only passes back keys a
 * `begin` of this plugin produced (it reads them from its own rows), so a plugin that maps
 * keys to paths cannot be made to touch another path.
 *
 * Nothing is held whole in memory on either side: an upload is written in chunks
 * (`begin`, any number of `write`s, then exactly one of `commit` or `abort`), a download is
 * read by range (`read`). A begun upload is invisible to `stat`, `read` and `remove` until
 * `commit` returns PYLON_OK; one that is aborted, whose `write` or `commit` fails, or that
 * was open when the process died leaves nothing behind (a plugin cleans what a crash left
 * at its next `create`).
 *
 * Every function may wait on the disk or the network: all are [may-block] and the host
 * calls them from threads of its own, never from an event loop.
 */

/** The longest key a plugin may produce (bytes). Keys are ASCII letters, digits, '-' and
 *  '_' only, so they are safe in logs and URLs. */
#define PYLON_FILES_KEY_MAX 128

/** An upload in progress. Opaque to the host. OWNER: the plugin; created by `begin`, freed
 *  by `commit` (whatever it returns) or `abort`, after which the host never uses it. */
typedef struct pylon_files_upload pylon_files_upload;

/** The `pylon.files/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_files_v1 {
    uint32_t struct_size;
    uint32_t reserved;        /* 0 */

    /**
     * Starts an upload and chooses its key: the plugin writes the key (1..PYLON_FILES_KEY_MAX
     * bytes, not NUL-terminated) into `key_out` (OWNED BY THE HOST, `PYLON_FILES_KEY_MAX`
     * bytes, valid during the call) and its length into `*key_len`, and the handle into
     * `*out`. Keys are unique and never reused. On failure `*out` is NULL and `err` says why.
     * [any-thread] [may-block]
     */
    pylon_status (*begin)(pylon_instance *instance, pylon_files_upload **out, char *key_out,
                          size_t *key_len, const pylon_error_sink *err);
    /**
     * Appends `len` bytes (OWNED BY THE HOST, borrowed for the call) to the upload. On
     * failure the upload is spoiled (the plugin may release its space at once; a full disk
     * is PYLON_ERR_IO with code "DISK_FULL") and the host calls `abort`.
     * [one-thread-at-a-time] per upload, [may-block].
     */
    pylon_status (*write)(pylon_instance *instance, pylon_files_upload *upload, const uint8_t *bytes,
                          size_t len, const pylon_error_sink *err);
    /**
     * Makes the upload durable (synced to stable storage) and readable under its key, all
     * or nothing. Frees `upload` whatever it returns; on failure nothing is kept.
     * [one-thread-at-a-time] per upload, [may-block].
     */
    pylon_status (*commit)(pylon_instance *instance, pylon_files_upload *upload, const pylon_error_sink *err);
    /** Discards the upload and everything written to it, and frees `upload`. [may-block] */
    void (*abort)(pylon_instance *instance, pylon_files_upload *upload);
    /**
     * The size in bytes of the stored file `key` (borrowed for the call) into `*size`.
     * PYLON_ERR_NOT_FOUND (code "FILE_NOT_FOUND") when there is none. [any-thread] [may-block]
     */
    pylon_status (*stat)(pylon_instance *instance, const char *key, size_t key_len, uint64_t *size,
                         const pylon_error_sink *err);
    /**
     * Reads up to `cap` bytes of the file `key` from byte `offset` into `buf` (OWNED BY THE
     * HOST, `cap` bytes, valid during the call) and sets `*read_len` to how many were read
     * (fewer than `cap` only at the end of the file; 0 at or past it).
     * PYLON_ERR_NOT_FOUND (code "FILE_NOT_FOUND") when there is none. [any-thread] [may-block]
     */
    pylon_status (*read)(pylon_instance *instance, const char *key, size_t key_len, uint64_t offset,
                         uint8_t *buf, size_t cap, size_t *read_len, const pylon_error_sink *err);
    /**
     * Deletes the file `key`. Reads that already started may finish or fail; later ones get
     * PYLON_ERR_NOT_FOUND. PYLON_ERR_NOT_FOUND when there was none. [any-thread] [may-block]
     */
    pylon_status (*remove)(pylon_instance *instance, const char *key, size_t key_len,
                           const pylon_error_sink *err);

    /* ---- 2.7 (optional: NULL, or a table that ends before it, means the host never
     *      sweeps orphaned bytes; everything else works as before) ---- */

    /**
     * Lists committed files in ascending byte order of their keys, starting after the key
     * `after` (borrowed for the call; `after_len` 0 = from the first key), at most `limit`
     * of them (the host asks for 1..1000). For each one, on the calling thread and before
     * `list` returns, calls `each(each_ctx, key, key_len, size, modified_ms)`: `key` is OWNED
     * BY THE PLUGIN and valid only during that callback; `size` in bytes; `modified_ms` is
     * when the file was committed (ms since 1970; the host deletes a file no row names
     * only when it is older than its grace period, so a file committed moments ago, whose
     * row is being written, is safe). Uploads in progress (begun, not committed) are never
     * listed. Sets `*more` to 1 when keys may follow the last one listed, else 0; the host
     * passes the last key it got as the next `after`. A key removed or added between pages
     * may be missed or listed once; nothing is listed twice within a page.
     * [any-thread] [may-block]
     */
    pylon_status (*list)(pylon_instance *instance, const char *after, size_t after_len, uint32_t limit,
                         void (*each)(void *each_ctx, const char *key, size_t key_len, uint64_t size,
                                      int64_t modified_ms),
                         void *each_ctx, uint8_t *more, const pylon_error_sink *err);
} pylon_files_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.auth.code/1 — one-time codes and links, and the email that carries them  (2.4)  */
/* ------------------------------------------------------------------------------------ */
/*
 * The plugin owns the secrets of email sign-in: it makes one-time codes (a few digits a
 * person types) and link tokens (long, random, carried in a URL) with a CSPRNG, keeps them
 * only as salted hashes, checks what a user presents in constant time, counts wrong
 * attempts, expires them and throttles resends; and it delivers the email that carries them
 * (SMTP, HTTP email APIs, or the log in development).
 *
 * The HOST keeps the records, so that every host on one database sees the same codes: each
 * record is an opaque `state` text the plugin returns (hash, salt, expiry, attempts, issue
 * time — never the secret) that the host stores under (purpose, subject) in its database
 * and hands back on the next call. The host reads a record, asks `check`, and writes back
 * what `check` returns inside one write transaction, so checks of one record never overlap
 * (across hosts too). The host owns users, sessions, rate limits and the HTTP routes.
 *
 * Results are small JSON documents handed to a `pylon_code_json_fn` once, on the calling
 * thread, before the call returns (only when it returns PYLON_OK).
 */

/** What a secret is (`pylon_code_request.kind`). */
#define PYLON_CODE_KIND_CODE 1  /* a short numeric code a person types; wrong attempts count */
#define PYLON_CODE_KIND_LINK 2  /* a long random token carried in a URL; single use */

/**
 * One `issue` or `check`. OWNER: the host; the struct and every byte it points to are
 * borrowed for the duration of the call only. The host sets `struct_size`.
 */
typedef struct pylon_code_request {
    uint32_t struct_size;
    int32_t kind;           /* PYLON_CODE_KIND_* */
    int64_t now_unix;       /* the host's wall clock, seconds since the Unix epoch */
    /** What the secret is for, which picks its lifetime: "magic_code",
     *  "email_verification", "magic_link", "password_reset" (a purpose the plugin does not
     *  know gets the lifetime of its kind). */
    pylon_str purpose;
    /** `issue`: the state stored for the same purpose and subject, or empty (len 0) when
     *  there is none (it decides the resend cooldown). `check`: the stored state. */
    pylon_str state;
    /** `check`: the code or token the user presented (any bytes, any length: the plugin
     *  bounds what it reads). Empty for `issue`. */
    pylon_str presented;
} pylon_code_request;

/**
 * Receives a call's JSON result. `json` is OWNED BY THE PLUGIN and valid during the
 * callback only; `ctx` is the caller's, passed back unchanged. Called at most once, on the
 * calling thread, before the call returns. [bounded]
 */
typedef void (*pylon_code_json_fn)(void *ctx, const char *json, size_t json_len);

/**
 * Completion of `send`: called exactly once per call that returned PYLON_OK, from any
 * thread (possibly before `send` returns). PYLON_OK with `err` NULL when the message was
 * accepted by the transport (the SMTP server or the HTTP API answered success); otherwise
 * `err` says why (code e.g. "EMAIL_SEND_FAILED", "EMAIL_TIMEOUT"; the message never holds
 * the secret or a credential). `err` is OWNED BY THE PLUGIN, valid during the callback
 * only. The callback is [bounded] and must not call `send` again inline.
 */
typedef void (*pylon_code_sent_fn)(void *done_ctx, pylon_status status, const pylon_error *err);

/**
 * One email to deliver. OWNER: the host; the struct and every byte it points to are
 * borrowed for the duration of `send` only (the plugin copies what it keeps).
 */
typedef struct pylon_code_email {
    uint32_t struct_size;
    uint32_t reserved;      /* 0 */
    /** The template, by Pylon's names: "MAGIC_CODE", "MAGIC_LINK", "PASSWORD_RESET",
     *  "EMAIL_CHANGE", "ORG_INVITE". The plugin renders subject and body from it. */
    pylon_str template_id;
    /** One recipient address, validated and normalized by the host (no CR, LF or spaces). */
    pylon_str to;
    /** The template's variables, a JSON object of strings: {"code"?, "url"?, "email",
     *  "org_name"?, "app_name"?}. */
    pylon_str vars_json;
} pylon_code_email;

/** The `pylon.auth.code/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_auth_code_v1 {
    uint32_t struct_size;
    uint32_t reserved;

    /**
     * Make a new secret for `req->purpose` of `req->kind`. On PYLON_OK `out` receives either
     * {"issued": true, "secret": string, "state": string, "expires_at": int, "key": string}
     * — `secret` is the plaintext code or token (to deliver; the host never stores it),
     * `state` the record to store in place of any earlier one, `expires_at` when it lapses
     * (unix seconds; the host may delete the record after it), `key` for a LINK the lookup
     * key `locate` gives for that token (empty for a CODE) —
     * or {"issued": false, "retry_after": int} when the stored state is a code issued less
     * than the resend cooldown ago (the record stays as it is).
     * A `req->state` the plugin cannot read counts as none. [any-thread] [bounded]
     */
    pylon_status (*issue)(pylon_instance *instance, const pylon_code_request *req,
                          pylon_code_json_fn out, void *out_ctx, const pylon_error_sink *err);
    /**
     * Check `req->presented` against `req->state`, in time that does not depend on where
     * they differ. On PYLON_OK `out` receives {"verdict": V, "state": string|null} with V one
     * of "accepted" (it matches: the secret is used up), "wrong" (it does not; one attempt
     * counted), "exhausted" (the attempt limit is or was reached: even the right secret is
     * refused from now on), "expired", "invalid" (a state the plugin cannot read).
     * The host then replaces the record with `state` when it is a string and deletes the
     * record when it is null. [any-thread] [bounded]
     */
    pylon_status (*check)(pylon_instance *instance, const pylon_code_request *req,
                          pylon_code_json_fn out, void *out_ctx, const pylon_error_sink *err);
    /**
     * The lookup key of a LINK token (`token`, borrowed for the call, any bytes): `out`
     * receives {"key": string}, the `key` `issue` returned with that token, or
     * {"key": null} when `token` cannot be one of this plugin's tokens.
     * [any-thread] [bounded]
     */
    pylon_status (*locate)(pylon_instance *instance, const char *token, size_t token_len,
                           pylon_code_json_fn out, void *out_ctx, const pylon_error_sink *err);
    /**
     * Deliver `email` through the configured transport. Returns at once: delivery runs on
     * threads of the plugin's own, and `done` follows `pylon_code_sent_fn`. On a status
     * other than PYLON_OK (e.g. PYLON_ERR_BUSY, code "EMAIL_QUEUE_FULL", when too many
     * messages wait) nothing is sent, `err` says why and `done` is never called.
     * `done_ctx` is the host's and must stay valid until `done` returns.
     * [any-thread] [bounded]
     */
    pylon_status (*send)(pylon_instance *instance, const pylon_code_email *email,
                         pylon_code_sent_fn done, void *done_ctx, const pylon_error_sink *err);
} pylon_auth_code_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.shard.sim/1 — a shard simulation (2.5)                                           */
/* ------------------------------------------------------------------------------------ */
/*
 * A shard is a running instance of a simulation: the HOST owns the shard registry, the tick
 * scheduling (many shards on a few threads, ticks against a monotonic clock), the bounded
 * input queues, subscribers, authentication, transports (SSE, WebSocket) and the HTTP
 * routes. The plugin is pure game logic over an opaque `pylon_sim_state`: it takes inputs,
 * advances time, and renders what one subscriber may see (area of interest and fog of war
 * happen in `snapshot_for`).
 *
 * THREADS. Every function that takes a `pylon_sim_state` is [one-thread-at-a-time] for that
 * state: the host never makes two calls on one state at once, but makes calls on different
 * states of the same plugin concurrently from different threads, so a plugin keeps no
 * mutable globals (or locks them). All are [bounded]: they run on the host's tick threads,
 * and a call that takes longer than the host's tick budget (PYLON_SHARD_TICK_BUDGET_MS)
 * gets its shard stopped (the host cannot interrupt the call; the thread is replaced).
 *
 * SNAPSHOTS are UTF-8 JSON documents (Pylon's default snapshot format): the host checks
 * each one and stops the shard on bytes that are not JSON, on an empty snapshot or on one
 * larger than PYLON_SIM_SNAPSHOT_MAX.
 *
 * SUBSCRIBERS are named by the host with an id of 1..128 bytes (letters, digits, '_', '-',
 * '.', ':', '@'); by default a user's subscriber id is the user's id.
 *
 * AUTH is the caller as JSON, borrowed for the call: {"user_id": string|null,
 * "is_admin": bool, "is_guest": bool, "roles": [string], "tenant_id": string|null}.
 *
 * Every (ptr, len) argument is OWNED BY THE HOST and borrowed for the duration of the call
 * only (the plugin copies what it keeps). Bytes the plugin hands back through a
 * `pylon_sim_bytes_fn` are OWNED BY THE PLUGIN and valid during that callback only (the host
 * copies them before the callback returns).
 */

/** The largest snapshot (and saved state) the host accepts, in bytes. */
#define PYLON_SIM_SNAPSHOT_MAX 4194304u /* 4 MiB */

/** One simulation's state (a shard's). Opaque to the host. OWNER: the plugin; created by
 *  `create` or `restore`, freed by `destroy`, after which the host never uses it. */
typedef struct pylon_sim_state pylon_sim_state;

/**
 * Receives bytes from the plugin: `bytes` (`len` bytes, not NUL-terminated) are OWNED BY THE
 * PLUGIN and valid during the callback only. `ctx` is the host's, passed back unchanged.
 * Called at most once, on the calling thread, before the call that got it returns. [bounded]
 */
typedef void (*pylon_sim_bytes_fn)(void *ctx, const uint8_t *bytes, size_t len);

/** The `pylon.shard.sim/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_shard_sim_v1 {
    uint32_t struct_size;
    uint32_t reserved;        /* 0 */
    /** The sim's name, as clients give it in `POST /api/shards {"sim": name}`: 1..64 of
     *  [a-z0-9_-], NUL-terminated, static. Two loaded sims with one name: the second is
     *  refused at startup. */
    const char *name;

    /**
     * A new state from `config_json` (the `config` object a shard is created with; `{}` when
     * none was given). On failure `*out` stays NULL and `err` says why (the host answers
     * 400 with the plugin's code and message, so say what is wrong with the config).
     */
    pylon_status (*create)(pylon_instance *instance, const char *config_json, size_t config_len,
                           pylon_sim_state **out, const pylon_error_sink *err);
    /** Frees `state`. Called once per state, by the thread that made its last call. */
    void (*destroy)(pylon_instance *instance, pylon_sim_state *state);

    /**
     * Applies one input of `subscriber` (`input_json`, the client's `input` value as JSON),
     * received at `received_at_unix_nanos` (the host's wall clock). Inputs are applied in the
     * order they were received, at the start of the tick after they arrived. A rejected
     * input returns non-zero with `err` (e.g. code "INPUT_REJECTED", message why): the host
     * sends that error to the subscriber and leaves the state as the sim left it (so a sim
     * validates before it changes anything).
     */
    pylon_status (*apply_input)(pylon_instance *instance, pylon_sim_state *state,
                                const char *subscriber, size_t subscriber_len,
                                const char *input_json, size_t input_len,
                                int64_t received_at_unix_nanos, const pylon_error_sink *err);
    /**
     * Advances the state by `dt_nanos` (0 on the first tick; else the scheduled interval, or
     * for an event-driven shard the time since the last tick). `tick` is the number of this
     * tick, from 1. A non-zero status stops the shard (logged with `err`).
     */
    pylon_status (*tick)(pylon_instance *instance, pylon_sim_state *state, uint64_t tick,
                         int64_t dt_nanos, const pylon_error_sink *err);
    /**
     * What `subscriber` sees now: the plugin calls `out` once with the snapshot's JSON
     * bytes (see SNAPSHOTS above) and returns PYLON_OK. A non-zero status, or PYLON_OK
     * without calling `out`, stops the shard.
     */
    pylon_status (*snapshot_for)(pylon_instance *instance, pylon_sim_state *state,
                                 const char *subscriber, size_t subscriber_len,
                                 pylon_sim_bytes_fn out, void *out_ctx, const pylon_error_sink *err);
    /** Non-zero when the simulation is over: the host stops and removes the shard after
     *  delivering this tick's snapshots. */
    int32_t (*is_finished)(pylon_instance *instance, pylon_sim_state *state);

    /**
     * May the caller (`auth_json`, see AUTH) watch the shard as `subscriber`? PYLON_OK
     * admits; any other status refuses (403 with the plugin's code and message).
     * NULL slot: the default rule — the admin, or a signed-in user whose id is `subscriber`.
     */
    pylon_status (*authorize_subscribe)(pylon_instance *instance, pylon_sim_state *state,
                                        const char *subscriber, size_t subscriber_len,
                                        const char *auth_json, size_t auth_len, const pylon_error_sink *err);
    /**
     * May the caller send `input_json` as `subscriber`? Called just before `apply_input`, at
     * the tick that applies it (the host has already checked that the caller attached that
     * subscriber, or is the admin). Refused: the subscriber gets an error frame and the
     * input is not applied. NULL slot: allowed.
     */
    pylon_status (*authorize_input)(pylon_instance *instance, pylon_sim_state *state,
                                    const char *subscriber, size_t subscriber_len,
                                    const char *auth_json, size_t auth_len,
                                    const char *input_json, size_t input_len, const pylon_error_sink *err);

    /**
     * Optional (NULL: the sim's shards are not persisted). The whole state as bytes through
     * `out` (at most PYLON_SIM_SNAPSHOT_MAX), which `restore` turns back into a state.
     */
    pylon_status (*save)(pylon_instance *instance, pylon_sim_state *state,
                         pylon_sim_bytes_fn out, void *out_ctx, const pylon_error_sink *err);
    /**
     * Optional (NULL when `save` is). A state from bytes `save` produced (by this version
     * of the plugin or an older one), into `*out`; on failure `*out` stays NULL.
     */
    pylon_status (*restore)(pylon_instance *instance, const uint8_t *saved, size_t saved_len,
                            pylon_sim_state **out, const pylon_error_sink *err);
} pylon_shard_sim_v1;

/* ------------------------------------------------------------------------------------ */
/* pylon.shard.transport/1 and pylon.host.shards/1 — a shard transport (2.6)             */
/* ------------------------------------------------------------------------------------ */
/*
 * A transport carries shard frames to clients over a wire of its own (Plugins/ShardWS: a
 * WebSocket listener). The PLUGIN owns its listener, the framing, its connections and their
 * per-connection queues. The HOST owns the shard registry, authentication (sessions, API
 * keys, JWTs, the admin token, and the limiter on wrong API keys), the subscriber mailboxes
 * (each holds only the newest snapshot: a slow reader makes the host drop older ones, never
 * queue them), the input queues and their rules (the same as for the HTTP input route and the
 * SSE stream: a caller sends input only as a subscriber it attached).
 *
 * The host calls `start` once its shards and auth are ready (only when a sim is loaded), and
 * `stop` before it shuts its shards down. The plugin reaches the host's side through
 * `pylon_host_v1.get_service(PYLON_SERVICE_SHARDS)`, available from `start` on.
 */

/** Service id of `pylon_host_shards_v1`. */
#define PYLON_SERVICE_SHARDS "pylon.host.shards/1"

/** Who a token stands for (the result of `authenticate`). Opaque. OWNER: the plugin once
 *  `authenticate` hands it over; freed with `release_caller` (exactly once). */
typedef struct pylon_shard_caller pylon_shard_caller;
/** One subscription to one shard (the result of `subscribe`). Opaque. OWNER: the plugin once
 *  `subscribe` hands it over; ended and freed with `unsubscribe` (exactly once). */
typedef struct pylon_shard_sub pylon_shard_sub;

/** Completion of `authenticate`: exactly once, from any thread (possibly before
 *  `authenticate` returns). PYLON_OK: `caller` is the plugin's (even for an anonymous
 *  caller, whom `subscribe` refuses). Otherwise `caller` is NULL and `err` (OWNED BY THE
 *  HOST, valid during the callback only) says why: PYLON_ERR_ABORTED (code
 *  "INVALID_API_KEY": a wrong, expired or revoked key), PYLON_ERR_BUSY (code "RATE_LIMITED":
 *  too many wrong API keys from that address). [bounded] */
typedef void (*pylon_shard_auth_fn)(void *done_ctx, pylon_status status, pylon_shard_caller *caller,
                                    const pylon_error *err);

/** Completion of `subscribe`: exactly once, from any thread (possibly before `subscribe`
 *  returns; normally at the shard's next tick). PYLON_OK: `sub` is the plugin's. Otherwise
 *  `sub` is NULL and `err` (OWNED BY THE HOST, valid during the callback only) carries the
 *  host's code and message; the status says what kind of refusal it is:
 *  PYLON_ERR_NOT_FOUND (no such shard, "SHARD_NOT_FOUND"), PYLON_ERR_INVALID_ARGUMENT (a
 *  subscriber id or shard id that cannot be one, "INVALID_SID"/"SID_REQUIRED"),
 *  PYLON_ERR_ABORTED (not allowed: not signed in, "AUTH_REQUIRED", or refused by the sim,
 *  "UNAUTHORIZED" or its own code), PYLON_ERR_BUSY (try again later or another shard:
 *  "SHARD_FULL", "SHARD_STOPPED"). [bounded] */
typedef void (*pylon_shard_subscribed_fn)(void *done_ctx, pylon_status status, pylon_shard_sub *sub,
                                          const pylon_error *err);

/** Kinds of `pylon_shard_delivery`. */
#define PYLON_SHARD_DELIVERY_FRAME 1  /* a tick's snapshot for this subscriber */
#define PYLON_SHARD_DELIVERY_ENDED 2  /* the subscription is over; nothing follows */

/**
 * What `next` hands over. OWNER: the host; the struct and every byte it points to are valid
 * during the `pylon_shard_delivery_fn` callback only (the plugin copies what it keeps).
 */
typedef struct pylon_shard_delivery {
    uint32_t struct_size;
    int32_t kind;           /* PYLON_SHARD_DELIVERY_* */
    /** FRAME: the tick the snapshot belongs to (from 1, increasing). */
    uint64_t tick;
    /** FRAME: the snapshot, a JSON document (checked by the host). */
    pylon_str snapshot;
    /** FRAME: the outcome of this subscriber's inputs applied up to this tick, each a JSON
     *  object to send to the client before the snapshot, one per line (separated by '\n';
     *  empty when none): {"type": "ack", "client_seq": n|null, "seq", "tick"} or
     *  {"type": "error", "error": {"code", "message"}, "client_seq": n|null, "seq", "tick"}. */
    pylon_str notes;
    /** ENDED: why, e.g. "replaced", "stopped", "finished", "idle", "session_ended". */
    pylon_str reason;
    /** FRAME: how many snapshots of this subscriber the host has dropped so far because an
     *  unsent one was replaced by a newer one (a slow reader). */
    uint64_t dropped;
} pylon_shard_delivery;

/** Receives a delivery from `next`: on the calling thread, before `next` returns. [bounded] */
typedef void (*pylon_shard_delivery_fn)(void *ctx, const pylon_shard_delivery *delivery);

/** Receives the JSON text frame a refused input answers with: on the calling thread, before
 *  `input` returns; `json` OWNED BY THE HOST, valid during the callback only. [bounded] */
typedef void (*pylon_shard_reply_fn)(void *ctx, const char *json, size_t json_len);

/**
 * The host's shards, for a transport plugin. OWNER: the host; LIFETIME: from the transport's
 * `start` until its `stop` returns. Every function is [any-thread] [bounded]: work that
 * waits (a session lookup, the shard's next tick) completes through a callback.
 */
typedef struct pylon_host_shards_v1 {
    uint32_t struct_size;
    uint32_t reserved;
    void *ctx;  /* opaque; pass back unchanged */

    /**
     * Resolve `token` (a bearer token as the client sent it, without "Bearer "; may be empty:
     * anonymous) for a client at `peer_ip` (its IP address as text; counts wrong API keys per
     * address). Both buffers are borrowed for the call. `done` follows `pylon_shard_auth_fn`;
     * `done_ctx` is the plugin's and must stay valid until `done` returns.
     */
    void (*authenticate)(void *ctx, const char *token, size_t token_len, const char *peer_ip,
                         size_t peer_len, pylon_shard_auth_fn done, void *done_ctx);
    /** Frees a caller from `authenticate`. Subscriptions made with it stay valid. */
    void (*release_caller)(void *ctx, pylon_shard_caller *caller);

    /**
     * Subscribe `caller` to the shard `shard_id` as the subscriber `sid` (empty: the caller's
     * user id). Buffers are borrowed for the call. The host admits it at the shard's next turn
     * (after the sim's `authorize_subscribe`); a subscriber already attached under `sid` is
     * ended ("replaced"). `done` follows `pylon_shard_subscribed_fn`.
     * `wake(wake_ctx)` is called (from the host's tick threads, possibly before `done`) each
     * time the subscription has something new for `next` after a `next` that found nothing,
     * until `unsubscribe` returns: never after, and never concurrently with `unsubscribe`.
     * It must be [bounded] and must not call back into this table (hand the work to a thread
     * or event loop of the plugin's). `wake_ctx` must stay valid until `unsubscribe` returns
     * (or until `done` reports a failure).
     * The subscription lives as long as the caller's session or API key: when it is revoked
     * or expires, the subscription ends with reason "session_ended".
     */
    void (*subscribe)(void *ctx, const pylon_shard_caller *caller, const char *shard_id, size_t shard_len,
                      const char *sid, size_t sid_len, void (*wake)(void *wake_ctx), void *wake_ctx,
                      pylon_shard_subscribed_fn done, void *done_ctx);
    /**
     * Take what is ready: a frame (the newest snapshot, with the notes of the inputs applied
     * since the last frame) or the end. Calls `out` once and returns 1 when there was
     * something; returns 0 when there was nothing, and then arms `wake` for the next thing.
     * The plugin calls it when it can send (its queue for the connection has room), so a
     * client that does not read costs the host one snapshot, never a queue.
     * [one-thread-at-a-time per subscription]
     */
    int32_t (*next)(void *ctx, pylon_shard_sub *sub, pylon_shard_delivery_fn out, void *out_ctx);
    /**
     * Queue an input the client sent as `message` (its whole frame: a JSON object
     * {"input": <the sim's input>, "client_seq"?: non-negative integer}, any bytes: the host
     * checks it) as this subscription's subscriber (a client sends input only as the
     * subscriber its connection attached). PYLON_OK: queued; the outcome comes
     * with a later frame's notes ("ack" or "error"). Otherwise the input was refused now
     * (not JSON, no "input", too large, the queue full, the shard stopped, the subscription
     * ended): `reply` receives the error frame to send, {"type": "error", "error": {"code",
     * "message"}, "client_seq": n|null}, and the status is PYLON_ERR_INVALID_ARGUMENT (a bad
     * or too large message), PYLON_ERR_BUSY (the shard's input queue is full, or the shard
     * stopped: "SHARD_STOPPED") or PYLON_ERR_ABORTED (this subscription has ended:
     * "NOT_SUBSCRIBED"). `message` is borrowed for the call.
     * [one-thread-at-a-time per subscription]
     */
    pylon_status (*input)(void *ctx, pylon_shard_sub *sub, const char *message, size_t message_len,
                          pylon_shard_reply_fn reply, void *reply_ctx);
    /** Ends the subscription (the subscriber leaves the shard) and frees `sub`. Exactly once
     *  per subscription, never from inside its `wake`. After it returns `wake` is not called. */
    void (*unsubscribe)(void *ctx, pylon_shard_sub *sub);
} pylon_host_shards_v1;

/** The `pylon.shard.transport/1` interface table. OWNER: the plugin; valid until `destroy`. */
typedef struct pylon_shard_transport_v1 {
    uint32_t struct_size;
    uint32_t reserved;

    /**
     * Start serving (open the listener). `config_json` (borrowed for the call) is the
     * plugin's config object: the manifest's `plugins."shard.transport"` with the host's
     * settings over it, for Plugins/ShardWS {"port": n (0: no listener), "bind": address,
     * "port_required": bool (fail when the port cannot be bound, else run without a
     * listener and log why), "max_connections_per_ip", "max_connections", "max_frame_bytes",
     * "handshake_timeout_ms", "idle_timeout_ms", "ping_interval_ms"}. Called once, after
     * `create`, from the host's startup thread. [one-thread-at-a-time] [may-block]
     */
    pylon_status (*start)(pylon_instance *instance, const char *config_json, size_t config_len,
                          const pylon_error_sink *err);
    /** The port it listens on, 0 when none. [any-thread] [bounded] */
    int32_t (*port)(pylon_instance *instance);
    /**
     * Stop serving: close the listener and every connection, `unsubscribe` every subscription
     * and release every caller; after it returns the plugin makes no call into
     * `pylon_host_shards_v1`. Called at most once, after `start`. [may-block]
     */
    void (*stop)(pylon_instance *instance);
} pylon_shard_transport_v1;

#ifdef __cplusplus
}
#endif

#endif /* PYLON_PLUGIN_H */
