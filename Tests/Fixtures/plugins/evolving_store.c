/*
 * evolving_store.c — store plugins from other ABI 2 minors, and a broken one, for
 * Tests/PylonHostTests/ABIEvolutionTests.swift. Each is the C executor from
 * examples/executor-c (included below, so it really stores data) behind a different
 * descriptor and table:
 *
 *   -DFIXTURE_NEWER_MINOR   built "against a newer minor" (a 2.1-style plugin on this host):
 *                           abi_minor = PYLON_ABI_MINOR + 1, a descriptor and a store table
 *                           each one slot longer, a store flag this host does not know, and a
 *                           host table it expects one slot longer than this host's. The extra
 *                           slots abort() if anyone calls them: the host must ignore them, and
 *                           the plugin reads its extra host slot only when the host table's
 *                           struct_size covers it (it logs that it fell back).
 *   -DFIXTURE_SHORT_TABLE   a store table that ends after `transaction`, as a plugin built
 *                           before the host's later slots would have it (a 2.0 plugin on a
 *                           2.1-style host): the optional slots in memory past struct_size
 *                           abort if called, so the host must probe struct_size first.
 *   -DFIXTURE_MISBEHAVE     SELECTs from certain tables misbehave (see misbehave_one()).
 *   -DFIXTURE_TABLE_SIZE=N  a store table claiming N bytes (too small: refused).
 *   -DFIXTURE_LOCAL_READS   PYLON_STORE_FLAG_LOCAL_READS, and every read on a connection
 *                           opened PYLON_STORE_OPEN_READ_BOUNDED answers PYLON_ERR_BUSY at once
 *                           (as a [bounded] store does when a lock is held elsewhere): the host
 *                           must retry on a reader connection. Anything but a SELECT, or a
 *                           transaction, on such a connection aborts: the host sends it only
 *                           point reads.
 *   (none of these)         this minor, optional slots NULL.
 *
 * Compile: cc -std=c99 -Wall -Wextra -Werror -shared -fPIC -I<abi include>
 *          -I<examples/executor-c> -D... -lsqlite3
 */
#include <stdlib.h>
#include <string.h>

/* The executor's own entry point gets another name; this file exports its own. */
#define pylon_plugin_entry executor_inner_entry
#include "executor.c"
#undef pylon_plugin_entry

#ifdef FIXTURE_NEWER_MINOR
#define FIXTURE_ID "test.store.newer"
#define FIXTURE_MINOR (PYLON_ABI_MINOR + 1)
/* A store flag from the future: the host ignores bits it does not know. */
#define FIXTURE_FLAGS 0x40000000u
#elif defined(FIXTURE_SHORT_TABLE)
#define FIXTURE_ID "test.store.short"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#elif defined(FIXTURE_MISBEHAVE)
#define FIXTURE_ID "test.store.misbehave"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#elif defined(FIXTURE_TABLE_SIZE)
#define FIXTURE_ID "test.store.small"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#elif defined(FIXTURE_LOCAL_READS)
#define FIXTURE_ID "test.store.local"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#define FIXTURE_FLAGS PYLON_STORE_FLAG_LOCAL_READS
#else
#define FIXTURE_ID "test.store.current"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#endif
#ifndef FIXTURE_FLAGS
#define FIXTURE_FLAGS 0u
#endif

/* A slot from the future, or one the host must not read: calling it is a test failure. */
static void must_not_be_called(void) {
    abort();
}

#ifdef FIXTURE_SHORT_TABLE
static pylon_status wait_notify_must_not_be_called(pylon_store_conn *conn, const char *channel, int32_t timeout_ms,
                                                   const pylon_error_sink *err) {
    (void)conn;
    (void)channel;
    (void)timeout_ms;
    (void)err;
    abort();
}

static size_t describe_must_not_be_called(pylon_instance *instance, char *buf, size_t cap) {
    (void)instance;
    (void)buf;
    (void)cap;
    abort();
}

static pylon_status backup_must_not_be_called(pylon_instance *instance, const char *path, const pylon_error_sink *err) {
    (void)instance;
    (void)path;
    (void)err;
    abort();
}

static pylon_status restore_must_not_be_called(pylon_instance *instance, const char *path, const char *sql, size_t len,
                                               const pylon_error_sink *err) {
    (void)instance;
    (void)path;
    (void)sql;
    (void)len;
    (void)err;
    abort();
}
#endif

#ifdef FIXTURE_NEWER_MINOR
static size_t newer_describe(pylon_instance *instance, char *buf, size_t cap) {
    (void)instance;
    return (size_t)snprintf(buf, cap, "newer-minor fixture store");
}

/* The host table as this plugin "knows" it: one slot longer than this host's. */
typedef struct fixture_host_table {
    pylon_host_v1 v2_0;
    void (*future_slot)(void);
} fixture_host_table;

/* `create` of the newer plugin: reads its extra host slot only when the host's struct_size
 * covers it, as the reading rule says, and says in the log that it fell back. */
static pylon_status newer_create(const pylon_host_v1 *host, const char *config_json, size_t config_len,
                                 pylon_instance **out, const pylon_error_sink *err) {
    pylon_status st = exec_create(host, config_json, config_len, out, err);
    if (st != PYLON_OK) return st;
    const fixture_host_table *known = (const fixture_host_table *)(const void *)host;
    int covered = host->struct_size >= offsetof(fixture_host_table, future_slot) + sizeof known->future_slot;
    const char *line = covered ? "newer fixture: the host has the future slot" :
                                 "newer fixture: the host table ends before the future slot; falling back";
    if (covered && known->future_slot != NULL) known->future_slot();
    host->log(host->host_ctx, PYLON_LOG_INFO, line, strlen(line));
    return PYLON_OK;
}
#define FIXTURE_CREATE newer_create
#define FIXTURE_SIZEOF_HOST sizeof(fixture_host_table)
#endif
#ifndef FIXTURE_CREATE
#define FIXTURE_CREATE exec_create
#define FIXTURE_SIZEOF_HOST sizeof(pylon_host_v1)
#endif

#ifdef FIXTURE_MISBEHAVE
/* Whether `sql` is a SELECT that reads `table`. */
static int reads(const char *sql, size_t len, const char *table) {
    char needle[64];
    snprintf(needle, sizeof needle, "FROM \"%s\"", table);
    size_t n = strlen(needle);
    if (sql == NULL || len < 6 || strncmp(sql, "SELECT", 6) != 0) return 0;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(sql + i, needle, n) == 0) return 1;
    return 0;
}

/* A code and a message far longer than any host keeps, with no NUL anywhere. */
#define FIXTURE_HUGE (1u << 20)
static char *huge_text(void) {
    static char *text = NULL;
    if (text == NULL) {
        text = malloc(FIXTURE_HUGE);
        if (text != NULL) memset(text, 'X', FIXTURE_HUGE);
    }
    return text;
}

/* 1: handled here (`*status` is the outcome), 0: the executor runs it. */
static int misbehave_one(const pylon_statement *s, const pylon_row_sink *sink, const pylon_error_sink *err,
                         pylon_status *status) {
    static const pylon_str three[3] = {{"id", 2}, {"a", 1}, {"b", 1}};
    pylon_value vals[5];
    memset(vals, 0, sizeof vals);
    *status = PYLON_OK;
    if (reads(s->sql, s->sql_len, "Failing")) {
        /* A made-up status with a 1 MiB code and message: the host keeps a bounded part. */
        pylon_error e;
        memset(&e, 0, sizeof e);
        e.struct_size = (uint32_t)sizeof e;
        e.status = 777;
        e.code.ptr = huge_text();
        e.code.len = e.code.ptr ? FIXTURE_HUGE : 0;
        e.message = e.code;
        if (err != NULL && err->set != NULL) err->set(err->ctx, &e);
        *status = 777;
        return 1;
    }
    if (reads(s->sql, s->sql_len, "Silent")) {
        /* A failure reported without any error. */
        *status = PYLON_ERR_IO;
        return 1;
    }
    if (reads(s->sql, s->sql_len, "Wide")) {
        /* Three columns announced, rows of five values. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 3);
        for (int i = 0; i < 5; i++) { vals[i].type = PYLON_VALUE_INT; vals[i].as.i = i; }
        if (sink && sink->row) sink->row(sink->ctx, vals, 5);
        return 1;
    }
    if (reads(s->sql, s->sql_len, "Garbage")) {
        /* A value of a type that does not exist, and text with a NULL pointer. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 3);
        vals[0].type = PYLON_VALUE_TEXT; vals[0].as.bytes.ptr = NULL; vals[0].as.bytes.len = 12345;
        vals[1].type = 99;
        vals[2].type = PYLON_VALUE_INT;
        if (sink && sink->row) sink->row(sink->ctx, vals, 3);
        return 1;
    }
    if (reads(s->sql, s->sql_len, "NullNames")) {
        /* Column names promised, array missing. */
        if (sink && sink->columns) sink->columns(sink->ctx, NULL, 4);
        return 1;
    }
    if (reads(s->sql, s->sql_len, "Short")) {
        /* Consistent, but fewer columns than the host selected. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 1);
        vals[0].type = PYLON_VALUE_TEXT; vals[0].as.bytes.ptr = (const uint8_t *)"short-row"; vals[0].as.bytes.len = 9;
        if (sink && sink->row) sink->row(sink->ctx, vals, 1);
        return 1;
    }
    return 0;
}

static pylon_status misbehave_execute(pylon_store_conn *conn, const pylon_statement *statements, size_t count,
                                      uint32_t flags, const pylon_row_sink *sink, pylon_exec_result *result,
                                      const pylon_error_sink *err) {
    pylon_status status;
    if (count == 1 && statements != NULL && misbehave_one(&statements[0], sink, err, &status)) return status;
    return exec_execute(conn, statements, count, flags, sink, result, err);
}
#define FIXTURE_EXECUTE misbehave_execute
#else
#define FIXTURE_EXECUTE exec_execute
#endif

#ifdef FIXTURE_LOCAL_READS
/* The connections opened PYLON_STORE_OPEN_READ_BOUNDED. The host opens every connection at
 * startup, before it serves, so the list is only read afterwards. */
#define FIXTURE_MAX_BOUNDED 64
static pylon_store_conn *bounded_conns[FIXTURE_MAX_BOUNDED];
static size_t bounded_count = 0;

static int is_bounded(const pylon_store_conn *conn) {
    for (size_t i = 0; i < bounded_count; i++)
        if (bounded_conns[i] == conn) return 1;
    return 0;
}

static pylon_status bounded_open(pylon_instance *inst, int32_t mode, pylon_store_conn **out, const pylon_error_sink *err) {
    int bounded = mode == PYLON_STORE_OPEN_READ_BOUNDED;
    pylon_status st = exec_open(inst, bounded ? PYLON_STORE_OPEN_READ : mode, out, err);
    if (st == PYLON_OK && bounded) {
        if (bounded_count == FIXTURE_MAX_BOUNDED) abort();
        bounded_conns[bounded_count++] = *out;
        host_log(inst, PYLON_LOG_INFO, "local-reads fixture: opened a bounded read connection");
    }
    return st;
}

static pylon_status bounded_execute(pylon_store_conn *conn, const pylon_statement *statements, size_t count,
                                    uint32_t flags, const pylon_row_sink *sink, pylon_exec_result *result,
                                    const pylon_error_sink *err) {
    if (!is_bounded(conn)) return exec_execute(conn, statements, count, flags, sink, result, err);
    for (size_t i = 0; i < count; i++)
        if (statements[i].sql == NULL || strncmp(statements[i].sql, "SELECT", 6) != 0) abort();
    if (flags != 0) abort();
    return set_error(err, PYLON_ERR_BUSY, "BUSY", "the database is locked by another connection (fixture)");
}

static pylon_status bounded_transaction(pylon_store_conn *conn, int32_t op, const pylon_error_sink *err) {
    if (is_bounded(conn)) abort();
    return exec_transaction(conn, op, err);
}
#define FIXTURE_OPEN bounded_open
#define FIXTURE_TRANSACTION bounded_transaction
#undef FIXTURE_EXECUTE
#define FIXTURE_EXECUTE bounded_execute
#endif
#ifndef FIXTURE_OPEN
#define FIXTURE_OPEN exec_open
#define FIXTURE_TRANSACTION exec_transaction
#endif

/* The store table this variant publishes: the current layout plus, for a newer minor, one
 * slot this host has never heard of. */
typedef struct fixture_store_table {
    pylon_store_v1 v2_0;
    void (*future_slot)(void);
} fixture_store_table;

#ifndef FIXTURE_TABLE_SIZE
#ifdef FIXTURE_NEWER_MINOR
#define FIXTURE_TABLE_SIZE sizeof(fixture_store_table)
#elif defined(FIXTURE_SHORT_TABLE)
#define FIXTURE_TABLE_SIZE offsetof(pylon_store_v1, describe)
#else
#define FIXTURE_TABLE_SIZE sizeof(pylon_store_v1)
#endif
#endif

static const fixture_store_table fixture_table = {
    {
        (uint32_t)(FIXTURE_TABLE_SIZE),
        FIXTURE_FLAGS,
        "sqlite",
        2,
        0,
        FIXTURE_OPEN,
        exec_close,
        FIXTURE_EXECUTE,
        FIXTURE_TRANSACTION,
#ifdef FIXTURE_NEWER_MINOR
        newer_describe,
        NULL, /* wait_notify: optional; the host polls */
        NULL, /* backup */
        NULL, /* restore */
#elif defined(FIXTURE_SHORT_TABLE)
        /* In memory, but past struct_size: never to be read. */
        describe_must_not_be_called,
        wait_notify_must_not_be_called,
        backup_must_not_be_called,
        restore_must_not_be_called,
#else
        NULL, /* describe: optional; the host falls back to the config's path */
        NULL, /* wait_notify */
        NULL, /* backup */
        NULL, /* restore */
#endif
    },
    must_not_be_called,
};

static const void *fixture_get_interface(pylon_instance *instance, const char *capability_id) {
    if (instance == NULL || capability_id == NULL) return NULL;
    if (strcmp(capability_id, PYLON_CAP_STORE) == 0) return &fixture_table;
    return NULL;
}

/* The descriptor, one slot longer for the newer minor. */
typedef struct fixture_descriptor {
    pylon_plugin_descriptor d;
    void (*future_slot)(void);
} fixture_descriptor;

static const char *const fixture_capabilities[] = {PYLON_CAP_STORE};

static const fixture_descriptor fixture_desc = {
    {
#ifdef FIXTURE_NEWER_MINOR
        (uint32_t)sizeof(fixture_descriptor),
#else
        (uint32_t)sizeof(pylon_plugin_descriptor),
#endif
        PYLON_ABI_MAJOR,
        FIXTURE_MINOR,
        PYLON_ABI_HEADER_HASH,
        (uint32_t)sizeof(void *),
        (uint32_t)sizeof(pylon_value),
        (uint32_t)sizeof(pylon_error),
        (uint32_t)FIXTURE_SIZEOF_HOST,
        FIXTURE_ID,
        "0.0.1",
        "ABI evolution fixture store (C executor inside)",
        fixture_capabilities,
        1,
        0,
        FIXTURE_CREATE,
        exec_destroy,
        fixture_get_interface,
    },
    must_not_be_called,
};

const pylon_plugin_descriptor *pylon_plugin_entry(void) {
    return &fixture_desc.d;
}
