/*
 * evolving_store.c — store plugins from other ABI revisions, and a broken one, for
 * Tests/PylonHostTests/ABIEvolutionTests.swift. Each is the C executor from
 * examples/executor-c (included below, so it really stores data) behind a different
 * descriptor and table:
 *
 *   -DFIXTURE_NEWER_MINOR   built "against a newer minor": abi_minor = PYLON_ABI_MINOR + 1,
 *                           a descriptor and a store table each one slot longer. The extra
 *                           slots abort() if anyone calls them: the host must ignore them.
 *   -DFIXTURE_MINOR0        built against ABI 1.0: the store table ends after `transaction`
 *                           (struct_size = PYLON_STORE_V1_SIZE_1_0). The 1.1 slots in memory
 *                           abort if called: the host must probe struct_size first.
 *   -DFIXTURE_MISBEHAVE     SELECTs from certain tables misbehave (see misbehave()).
 *   -DFIXTURE_TABLE_SIZE=N  a store table claiming N bytes (too small: refused).
 *
 * Compile: cc -std=c99 -shared -fPIC -I<abi include> -I<examples/executor-c> -D... -lsqlite3
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
#elif defined(FIXTURE_MINOR0)
#define FIXTURE_ID "test.store.minor0"
#define FIXTURE_MINOR 0
#elif defined(FIXTURE_MISBEHAVE)
#define FIXTURE_ID "test.store.misbehave"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#else
#define FIXTURE_ID "test.store.small"
#define FIXTURE_MINOR PYLON_ABI_MINOR
#endif

/* A slot from the future, or one the host must not read: calling it is a test failure. */
static void must_not_be_called(void) {
    abort();
}

#ifdef FIXTURE_MINOR0
static pylon_status wait_notify_must_not_be_called(pylon_store_conn *conn, const char *channel, int32_t timeout_ms,
                                                   pylon_error *err) {
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

static pylon_status backup_must_not_be_called(pylon_instance *instance, const char *path, pylon_error *err) {
    (void)instance;
    (void)path;
    (void)err;
    abort();
}

static pylon_status restore_must_not_be_called(pylon_instance *instance, const char *path, const char *sql, size_t len,
                                               pylon_error *err) {
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
#endif

#ifdef FIXTURE_MISBEHAVE
/* Misbehaves on SELECTs that read one of these tables; everything else is the executor. */
static int reads(const char *sql, size_t len, const char *table) {
    char needle[64];
    snprintf(needle, sizeof needle, "FROM \"%s\"", table);
    size_t n = strlen(needle);
    if (len < 6 || strncmp(sql, "SELECT", 6) != 0) return 0;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(sql + i, needle, n) == 0) return 1;
    return 0;
}

static void misbehave_execute(pylon_store_conn *conn, const char *sql, size_t sql_len, const pylon_value *params,
                              size_t param_count, const pylon_row_sink *sink, pylon_store_done_fn done, void *done_ctx) {
    static const pylon_str three[3] = {{"id", 2}, {"a", 1}, {"b", 1}};
    pylon_value vals[5];
    memset(vals, 0, sizeof vals);
    if (sql != NULL && reads(sql, sql_len, "Failing")) {
        /* An error whose code and message have no NUL at all, and a made-up status. */
        pylon_error err;
        memset(&err, 'X', sizeof err);
        err.struct_size = 0;
        err.status = 777;
        done(done_ctx, 777, NULL, &err);
        return;
    }
    if (sql != NULL && reads(sql, sql_len, "Wide")) {
        /* Three columns announced, rows of five values. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 3);
        for (int i = 0; i < 5; i++) { vals[i].type = PYLON_VALUE_INT; vals[i].as.i = i; }
        if (sink && sink->row) sink->row(sink->ctx, vals, 5);
        finish(done, done_ctx, SQLITE_OK, NULL, 0, 0);
        return;
    }
    if (sql != NULL && reads(sql, sql_len, "Garbage")) {
        /* A value of a type that does not exist, and text with a NULL pointer. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 3);
        vals[0].type = PYLON_VALUE_TEXT; vals[0].as.bytes.ptr = NULL; vals[0].as.bytes.len = 12345;
        vals[1].type = 99;
        vals[2].type = PYLON_VALUE_INT;
        if (sink && sink->row) sink->row(sink->ctx, vals, 3);
        finish(done, done_ctx, SQLITE_OK, NULL, 0, 0);
        return;
    }
    if (sql != NULL && reads(sql, sql_len, "NullNames")) {
        /* Column names promised, array missing. */
        if (sink && sink->columns) sink->columns(sink->ctx, NULL, 4);
        finish(done, done_ctx, SQLITE_OK, NULL, 0, 0);
        return;
    }
    if (sql != NULL && reads(sql, sql_len, "Short")) {
        /* Consistent, but fewer columns than the host selected. */
        if (sink && sink->columns) sink->columns(sink->ctx, three, 1);
        vals[0].type = PYLON_VALUE_TEXT; vals[0].as.bytes.ptr = (const uint8_t *)"short-row"; vals[0].as.bytes.len = 9;
        if (sink && sink->row) sink->row(sink->ctx, vals, 1);
        finish(done, done_ctx, SQLITE_OK, NULL, 0, 0);
        return;
    }
    if (sql != NULL && reads(sql, sql_len, "NoResult")) {
        /* Success without a result, after an error-free row-less run. */
        done(done_ctx, PYLON_OK, NULL, NULL);
        return;
    }
    exec_execute(conn, sql, sql_len, params, param_count, sink, done, done_ctx);
}
#endif

/* The store table this variant publishes: the current layout plus, for a newer minor, one
 * slot this host has never heard of. */
typedef struct fixture_store_table {
    pylon_store_v1 v1;
    void (*future_slot)(void);
} fixture_store_table;

#ifndef FIXTURE_TABLE_SIZE
#ifdef FIXTURE_NEWER_MINOR
#define FIXTURE_TABLE_SIZE sizeof(fixture_store_table)
#elif defined(FIXTURE_MINOR0)
#define FIXTURE_TABLE_SIZE PYLON_STORE_V1_SIZE_1_0
#else
#define FIXTURE_TABLE_SIZE sizeof(pylon_store_v1)
#endif
#endif

static const fixture_store_table fixture_table = {
    {
        (uint32_t)(FIXTURE_TABLE_SIZE),
        PYLON_STORE_FLAG_COMPLETES_INLINE,
        "sqlite",
        2,
        0,
        exec_open,
        exec_close,
#ifdef FIXTURE_MISBEHAVE
        misbehave_execute,
#else
        exec_execute,
#endif
        exec_transaction,
#ifdef FIXTURE_NEWER_MINOR
        newer_describe,
#elif defined(FIXTURE_MINOR0)
        describe_must_not_be_called, /* in memory, but past struct_size: never to be read */
#else
        NULL, /* optional: the host falls back to the config's path */
#endif
#ifdef FIXTURE_MINOR0
        wait_notify_must_not_be_called, /* in memory, but past struct_size */
#else
        NULL, /* wait_notify: optional; the host polls */
#endif
#ifdef FIXTURE_MINOR0
        NULL, /* execute_batch */
        NULL, /* commit_batch */
        backup_must_not_be_called,  /* ABI 1.8, in memory, but past struct_size */
        restore_must_not_be_called, /* ABI 1.8, in memory, but past struct_size */
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
        (uint32_t)sizeof(pylon_host_v1),
        FIXTURE_ID,
        "0.0.1",
        "ABI evolution fixture store (C executor inside)",
        fixture_capabilities,
        1,
        0,
        exec_create,
        exec_destroy,
        fixture_get_interface,
    },
    must_not_be_called,
};

const pylon_plugin_descriptor *pylon_plugin_entry(void) {
    return &fixture_desc.d;
}
