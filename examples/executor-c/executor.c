/*
 * executor.c — a complete `pylon.store/1` executor plugin in plain C99, over libsqlite3.
 *
 * It is what a third party writes: it includes only `pylon_plugin.h`, links no host symbol
 * and no Swift, and is built with `cc -shared -fPIC` (see Makefile). Select it with
 *
 *     "plugins": {"store": {"use": "executor_c", "path": "data/app.db"}}
 *
 * and the host generates SQLite-dialect SQL that this file executes. Every store call is
 * synchronous and [may-block]: the host calls it from its own store threads, one thread per
 * connection, never from an event loop. See docs/writing-a-plugin.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "pylon_plugin.h"

#define EXEC_PLUGIN_ID "example.executor_c"
#define EXEC_MAX_PATH 4096

/* ---------------------------------------------------------------------------------------- */
/* Instance and connections                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* One per `create`. OWNER: this plugin (freed by `destroy`). Read-only after create, so
 * any thread may use it. */
struct pylon_instance {
    const pylon_host_v1 *host; /* OWNER: the host; valid until after destroy */
    char path[EXEC_MAX_PATH];
    int busy_timeout_ms;
};

/* One per `open`. Used by one thread at a time (the ABI's rule), hence SQLITE_OPEN_NOMUTEX. */
struct pylon_store_conn {
    sqlite3 *db;
    int writable;
};

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Reports an error through the host's sink: the strings are borrowed for the duration of
 * `set` only (the host copies them), so stack buffers are fine. Returns `status`. */
static pylon_status set_error(const pylon_error_sink *err, pylon_status status, const char *code, const char *message) {
    if (err == NULL || err->set == NULL) return status;
    pylon_error e;
    memset(&e, 0, sizeof e);
    e.struct_size = (uint32_t)sizeof e;
    e.status = status;
    e.code.ptr = code;
    e.code.len = strlen(code);
    e.message.ptr = message;
    e.message.len = message ? strlen(message) : 0;
    err->set(err->ctx, &e);
    return status;
}

/* SQLite's extended result code as the ABI's status. */
static pylon_status status_of(int rc) {
    switch (rc & 0xFF) {
    case SQLITE_CONSTRAINT: return PYLON_ERR_CONSTRAINT;
    case SQLITE_BUSY: case SQLITE_LOCKED: return PYLON_ERR_BUSY;
    case SQLITE_IOERR: case SQLITE_FULL: case SQLITE_CANTOPEN: case SQLITE_READONLY: return PYLON_ERR_IO;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return PYLON_ERR_CORRUPT;
    case SQLITE_NOMEM: return PYLON_ERR_NO_MEMORY;
    case SQLITE_MISUSE: case SQLITE_RANGE: case SQLITE_MISMATCH: case SQLITE_TOOBIG: return PYLON_ERR_INVALID_ARGUMENT;
    case SQLITE_INTERRUPT: case SQLITE_ABORT: return PYLON_ERR_ABORTED;
    default: return PYLON_ERR_GENERIC;
    }
}

/* The stable code the host matches on (UNIQUE_VIOLATION becomes HTTP 409). */
static const char *code_of(int rc) {
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE: case SQLITE_CONSTRAINT_PRIMARYKEY: return "UNIQUE_VIOLATION";
    case SQLITE_CONSTRAINT_NOTNULL: return "NOT_NULL_VIOLATION";
    case SQLITE_CONSTRAINT_FOREIGNKEY: return "FOREIGN_KEY_VIOLATION";
    case SQLITE_CONSTRAINT_CHECK: return "CHECK_VIOLATION";
    default: break;
    }
    switch (rc & 0xFF) {
    case SQLITE_CONSTRAINT: return "CONSTRAINT_VIOLATION";
    case SQLITE_BUSY: case SQLITE_LOCKED: return "BUSY";
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return "CORRUPT";
    case SQLITE_FULL: return "DISK_FULL";
    case SQLITE_IOERR: return "IO_ERROR";
    default: return "SQL_ERROR";
    }
}

/* Ends a store call: PYLON_OK, or the SQLite failure `rc` reported through `err`. */
static pylon_status finish(const pylon_error_sink *err, int rc, const char *message) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE) return PYLON_OK;
    return set_error(err, status_of(rc), code_of(rc), message);
}

/* ---------------------------------------------------------------------------------------- */
/* Config: the manifest's `plugins.store` object minus "use", e.g. {"path":"app.db"}         */
/* ---------------------------------------------------------------------------------------- */

/* Finds `"key"` followed by `:` in a flat JSON object and returns a pointer to the value, or
 * NULL. Enough for this example's two keys; a production plugin would use a JSON library. */
static const char *json_find(const char *json, size_t len, const char *key) {
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 2 <= len; i++) {
        if (json[i] != '"' || strncmp(json + i + 1, key, klen) != 0 || json[i + 1 + klen] != '"') continue;
        size_t j = i + klen + 2;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        if (j >= len || json[j] != ':') continue;
        j++;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        return j < len ? json + j : NULL;
    }
    return NULL;
}

/* Copies a JSON string value (simple escapes; \u is refused) into `out`. 0 on success. */
static int json_string(const char *p, const char *end, char *out, size_t cap) {
    if (p >= end || *p != '"') return -1;
    size_t n = 0;
    for (p++; p < end && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            if (++p >= end) return -1;
            switch (*p) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            default: return -1;
            }
        }
        if (n + 1 >= cap) return -1;
        out[n++] = c;
    }
    if (p >= end) return -1;
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void host_log(const pylon_instance *inst, int32_t level, const char *msg) {
    if (inst->host != NULL && inst->host->log != NULL) inst->host->log(inst->host->host_ctx, level, msg, strlen(msg));
}

static pylon_status exec_create(const pylon_host_v1 *host, const char *config_json, size_t config_len,
                                pylon_instance **out, const pylon_error_sink *err) {
    if (out == NULL || host == NULL) {
        set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "create needs a host table and an out pointer");
        return PYLON_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    pylon_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) {
        set_error(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
        return PYLON_ERR_NO_MEMORY;
    }
    inst->host = host;
    inst->busy_timeout_ms = 5000;
    snprintf(inst->path, sizeof inst->path, "%s", "pylon.db");
    if (config_json == NULL) config_len = 0;
    const char *end = config_json ? config_json + config_len : NULL;
    const char *v = config_json ? json_find(config_json, config_len, "path") : NULL;
    if (v != NULL && json_string(v, end, inst->path, sizeof inst->path) != 0) {
        free(inst);
        set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG",
                  EXEC_PLUGIN_ID ": \"path\" must be a non-empty string without \\u escapes (the SQLite file)");
        return PYLON_ERR_INVALID_ARGUMENT;
    }
    v = config_json ? json_find(config_json, config_len, "busy_timeout_ms") : NULL;
    if (v != NULL) {
        char *stop = NULL;
        long ms = strtol(v, &stop, 10);
        if (stop == v || ms < 0 || ms > 600000) {
            free(inst);
            set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", EXEC_PLUGIN_ID ": \"busy_timeout_ms\" must be an integer in 0...600000");
            return PYLON_ERR_INVALID_ARGUMENT;
        }
        inst->busy_timeout_ms = (int)ms;
    }
    host_log(inst, PYLON_LOG_DEBUG, "executor_c: created");
    *out = inst;
    return PYLON_OK;
}

static void exec_destroy(pylon_instance *instance) {
    free(instance);
}

/* ---------------------------------------------------------------------------------------- */
/* pylon.store/1                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int run_simple(sqlite3 *db, const char *sql) {
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static pylon_status exec_open(pylon_instance *inst, int32_t mode, pylon_store_conn **out, const pylon_error_sink *err) {
    if (inst == NULL || out == NULL) {
        set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "open needs an instance and an out pointer");
        return PYLON_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(inst->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        char msg[EXEC_MAX_PATH + 512];
        snprintf(msg, sizeof msg, "cannot open SQLite database at %s: %.300s", inst->path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        set_error(err, status_of(rc), code_of(rc), msg);
        return status_of(rc);
    }
    sqlite3_extended_result_codes(db, 1);
    /* A double-quoted name that is no column must be an error, not a string literal. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)0);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)0);
    sqlite3_busy_timeout(db, inst->busy_timeout_ms);
    int writable = mode == PYLON_STORE_OPEN_WRITE;
    rc = run_simple(db, writable ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL" : "PRAGMA query_only=1");
    if (rc != SQLITE_OK) {
        char msg[EXEC_MAX_PATH + 512];
        snprintf(msg, sizeof msg, "cannot configure SQLite database at %s: %.300s", inst->path, sqlite3_errmsg(db));
        sqlite3_close(db);
        set_error(err, status_of(rc), code_of(rc), msg);
        return status_of(rc);
    }
    pylon_store_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        sqlite3_close(db);
        set_error(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
        return PYLON_ERR_NO_MEMORY;
    }
    conn->db = db;
    conn->writable = writable;
    *out = conn;
    return PYLON_OK;
}

static void exec_close(pylon_store_conn *conn) {
    if (conn == NULL) return;
    if (!sqlite3_get_autocommit(conn->db)) run_simple(conn->db, "ROLLBACK");
    sqlite3_close(conn->db);
    free(conn);
}

/* Binds the host's typed parameters. The host owns their bytes for the call; the statement
 * is finalized before `execute` returns, so SQLITE_STATIC is safe. */
static int bind_params(sqlite3_stmt *stmt, const pylon_value *params, size_t count) {
    for (size_t i = 0; i < count; i++) {
        int idx = (int)i + 1, rc;
        const pylon_value *v = &params[i];
        switch (v->type) {
        case PYLON_VALUE_NULL: rc = sqlite3_bind_null(stmt, idx); break;
        case PYLON_VALUE_INT: rc = sqlite3_bind_int64(stmt, idx, v->as.i); break;
        case PYLON_VALUE_DOUBLE: rc = sqlite3_bind_double(stmt, idx, v->as.d); break;
        case PYLON_VALUE_TEXT:
            rc = sqlite3_bind_text64(stmt, idx, v->as.bytes.ptr ? (const char *)v->as.bytes.ptr : "",
                                     (sqlite3_uint64)v->as.bytes.len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case PYLON_VALUE_BLOB:
            rc = sqlite3_bind_blob64(stmt, idx, v->as.bytes.ptr ? (const void *)v->as.bytes.ptr : "",
                                     (sqlite3_uint64)v->as.bytes.len, SQLITE_STATIC);
            break;
        default: return SQLITE_MISMATCH;
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

/* Streams the current row to the sink. Values point into SQLite's buffers, valid until the
 * next step: exactly the lifetime the ABI gives the host ("during that callback"). */
static pylon_status send_row(sqlite3_stmt *stmt, const pylon_row_sink *sink, pylon_value *values, int ncols) {
    for (int c = 0; c < ncols; c++) {
        pylon_value *v = &values[c];
        memset(v, 0, sizeof *v);
        switch (sqlite3_column_type(stmt, c)) {
        case SQLITE_INTEGER: v->type = PYLON_VALUE_INT; v->as.i = sqlite3_column_int64(stmt, c); break;
        case SQLITE_FLOAT: v->type = PYLON_VALUE_DOUBLE; v->as.d = sqlite3_column_double(stmt, c); break;
        case SQLITE_TEXT:
            v->type = PYLON_VALUE_TEXT;
            v->as.bytes.ptr = sqlite3_column_text(stmt, c);
            v->as.bytes.len = (size_t)sqlite3_column_bytes(stmt, c);
            break;
        case SQLITE_BLOB:
            v->type = PYLON_VALUE_BLOB;
            v->as.bytes.ptr = sqlite3_column_blob(stmt, c);
            v->as.bytes.len = (size_t)sqlite3_column_bytes(stmt, c);
            break;
        default: v->type = PYLON_VALUE_NULL; break;
        }
    }
    return sink->row(sink->ctx, values, (size_t)ncols);
}

/* One statement; its rows to `sink` (may be NULL), its summary to `result` (may be NULL). */
static pylon_status exec_one(pylon_store_conn *conn, const pylon_statement *s, const pylon_row_sink *sink,
                             pylon_exec_result *result, const pylon_error_sink *err) {
    const char *sql = s->sql;
    size_t sql_len = s->sql_len, param_count = s->param_count;
    const pylon_value *params = s->params;
    if (sql == NULL || (param_count > 0 && params == NULL)) {
        return finish(err, SQLITE_MISUSE, "execute needs SQL and parameters");
    }
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(conn->db, sql, (int)sql_len, &stmt, &tail);
    if (rc != SQLITE_OK || stmt == NULL) {
        return finish(err, rc == SQLITE_OK ? SQLITE_MISUSE : rc, rc == SQLITE_OK ? "empty statement" : sqlite3_errmsg(conn->db));
    }
    if ((size_t)sqlite3_bind_parameter_count(stmt) != param_count) {
        char msg[128];
        snprintf(msg, sizeof msg, "statement expects %d parameters, got %zu", sqlite3_bind_parameter_count(stmt), param_count);
        sqlite3_finalize(stmt);
        return finish(err, SQLITE_RANGE, msg);
    }
    rc = bind_params(stmt, params, param_count);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return finish(err, rc, "cannot bind a parameter (unknown value type?)");
    }
    int ncols = sqlite3_column_count(stmt);
    int want_rows = sink != NULL && sink->row != NULL;
    if (sink != NULL && sink->columns != NULL) {
        pylon_str *names = calloc((size_t)(ncols > 0 ? ncols : 1), sizeof *names);
        if (names == NULL) {
            sqlite3_finalize(stmt);
            return finish(err, SQLITE_NOMEM, "out of memory");
        }
        for (int c = 0; c < ncols; c++) {
            const char *name = sqlite3_column_name(stmt, c);
            names[c].ptr = name ? name : "";
            names[c].len = name ? strlen(name) : 0;
        }
        pylon_status st = sink->columns(sink->ctx, names, (size_t)ncols);
        free(names);
        if (st != PYLON_OK) {
            sqlite3_finalize(stmt);
            return finish(err, SQLITE_ABORT, "the row sink stopped the statement");
        }
    }
    pylon_value *values = want_rows ? calloc((size_t)(ncols > 0 ? ncols : 1), sizeof *values) : NULL;
    if (want_rows && values == NULL) {
        sqlite3_finalize(stmt);
        return finish(err, SQLITE_NOMEM, "out of memory");
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (want_rows && send_row(stmt, sink, values, ncols) != PYLON_OK) {
            rc = SQLITE_ABORT;
            break;
        }
    }
    free(values);
    int readonly = sqlite3_stmt_readonly(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ABORT) return finish(err, rc, "the row sink stopped the statement");
    if (rc != SQLITE_DONE) return finish(err, sqlite3_extended_errcode(conn->db), sqlite3_errmsg(conn->db));
    if (result != NULL && result->struct_size >= sizeof *result) {
        result->rows_affected = readonly ? 0 : sqlite3_changes64(conn->db);
        result->last_insert_id = sqlite3_last_insert_rowid(conn->db);
    }
    return PYLON_OK;
}

static pylon_status exec_transaction(pylon_store_conn *conn, int32_t op, const pylon_error_sink *err) {
    const char *sql;
    switch (op) {
    case PYLON_TX_BEGIN: sql = "BEGIN IMMEDIATE"; break;
    case PYLON_TX_BEGIN_READ: sql = "BEGIN DEFERRED"; break;
    case PYLON_TX_COMMIT: sql = "COMMIT"; break;
    case PYLON_TX_ROLLBACK: sql = "ROLLBACK"; break;
    default: return finish(err, SQLITE_MISUSE, "unknown transaction op");
    }
    if (conn == NULL) return finish(err, SQLITE_MISUSE, "transaction needs a connection");
    int rc = run_simple(conn->db, sql);
    if (rc != SQLITE_OK) {
        int ext = sqlite3_extended_errcode(conn->db);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s failed: %.900s", sql, sqlite3_errmsg(conn->db));
        /* The ABI: a failed COMMIT leaves no transaction open. */
        if (op == PYLON_TX_COMMIT && !sqlite3_get_autocommit(conn->db)) run_simple(conn->db, "ROLLBACK");
        return finish(err, ext, msg);
    }
    return PYLON_OK;
}

/* The `execute` slot: the statements in order (only the last one's rows go to `sink`), then
 * COMMIT when asked. A local file saves no round trips by batching, so one at a time. */
static pylon_status exec_execute(pylon_store_conn *conn, const pylon_statement *statements, size_t count,
                                 uint32_t flags, const pylon_row_sink *sink, pylon_exec_result *result,
                                 const pylon_error_sink *err) {
    if (conn == NULL || (count > 0 && statements == NULL)) {
        return finish(err, SQLITE_MISUSE, "execute needs a connection and statements");
    }
    for (size_t i = 0; i < count; i++) {
        pylon_status st = exec_one(conn, &statements[i], i + 1 == count ? sink : NULL, result, err);
        if (st != PYLON_OK) return st;
    }
    if (flags & PYLON_EXEC_COMMIT) return exec_transaction(conn, PYLON_TX_COMMIT, err);
    return PYLON_OK;
}

/* Optional: where the data lives, for the host's startup log. */
static size_t exec_describe(pylon_instance *inst, char *buf, size_t cap) {
    if (inst == NULL || buf == NULL || cap == 0) return 0;
    int n = snprintf(buf, cap, "SQLite file %s (C executor, libsqlite3 %s)", inst->path, sqlite3_libversion());
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Tables and the entry point                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Designated initializers: optional slots left out are NULL, which means "not provided",
 * and slots a later ABI minor appends stay NULL when the file is rebuilt against it. */
static const pylon_store_v1 exec_store_table = {
    .struct_size = (uint32_t)sizeof(pylon_store_v1),
    .flags = 0,
    .dialect = "sqlite",
    .max_readers = 4,
    .open = exec_open,
    .close = exec_close,
    .execute = exec_execute,
    .transaction = exec_transaction,
    .describe = exec_describe,
    /* wait_notify: optional; one SQLite file has one host, which needs no signals.
     * backup, restore: optional; without them `pylon-host backup` says this store has none. */
};

static const void *exec_get_interface(pylon_instance *instance, const char *capability_id) {
    if (instance == NULL || capability_id == NULL) return NULL;
    if (strcmp(capability_id, PYLON_CAP_STORE) == 0) return &exec_store_table;
    return NULL;
}

static const char *const exec_capabilities[] = {PYLON_CAP_STORE};

static const pylon_plugin_descriptor exec_descriptor = {
    (uint32_t)sizeof(pylon_plugin_descriptor),
    PYLON_ABI_MAJOR,
    PYLON_ABI_MINOR,
    PYLON_ABI_HEADER_HASH,
    (uint32_t)sizeof(void *),
    (uint32_t)sizeof(pylon_value),
    (uint32_t)sizeof(pylon_error),
    (uint32_t)sizeof(pylon_host_v1),
    EXEC_PLUGIN_ID,
    "0.1.0",
    "example executor in C99 over libsqlite3 (examples/executor-c)",
    exec_capabilities,
    1,
    0,
    exec_create,
    exec_destroy,
    exec_get_interface,
};

/* The one exported symbol: cheap, side-effect free, callable more than once. */
const pylon_plugin_descriptor *pylon_plugin_entry(void) {
    return &exec_descriptor;
}
