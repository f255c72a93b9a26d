/*
 * fixture_plugin.c — a tiny, valid Pylon plugin in plain C99, used by
 * Tests/PylonHostTests/PluginABITests.swift to exercise the loader's handshake.
 *
 * It provides one dummy capability ("test.dummy/1") that the host never selects, so it
 * can sit in a plugins folder next to the real store without changing what is served.
 *
 * Compile-time overrides (to build deliberately broken variants):
 *   -DFIXTURE_ID='"some.id"'      plugin_id (default "test.fixture")
 *   -DFIXTURE_ABI_MAJOR=3         abi_major in the descriptor (default PYLON_ABI_MAJOR)
 *   -DFIXTURE_STRUCT_SIZE=16      struct_size in the descriptor (default the real size)
 *   -DFIXTURE_FILES               serves pylon.files/1 with a table whose slots are all NULL
 *                                 (BackupFilesTests: serve refuses it, backup leaves the
 *                                 bytes out and says so)
 *   -DFIXTURE_ABI_1               a plugin built against ABI 1.8: the 1.x descriptor (same
 *                                 leading fields, the 1.x `pylon_error` with its fixed
 *                                 `code[32]` and 1024-byte message), abi 1.8
 *
 * Compile: cc -std=c99 -Wall -Wextra -Werror -shared -fPIC -I<abi include> -D...
 */
#include <stdlib.h>
#include <string.h>

#include "pylon_plugin.h"

#ifndef FIXTURE_ID
#define FIXTURE_ID "test.fixture"
#endif
#ifndef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR PYLON_ABI_MAJOR
#endif
#ifndef FIXTURE_STRUCT_SIZE
#define FIXTURE_STRUCT_SIZE sizeof(pylon_plugin_descriptor)
#endif

#ifdef FIXTURE_FILES
#define FIXTURE_CAPABILITY PYLON_CAP_FILES
/* Every slot NULL: a broken files plugin the host must not call. */
static const pylon_files_v1 fixture_files_table = {(uint32_t)sizeof(pylon_files_v1), 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
#else
#define FIXTURE_CAPABILITY "test.dummy/1"
#endif

/* The instance is opaque to the host; this plugin needs no state beyond a marker. */
struct pylon_instance {
    uint32_t magic;
};

/* The dummy capability's interface table: only the mandatory leading struct_size. */
typedef struct fixture_dummy_v1 {
    uint32_t struct_size;
    uint32_t reserved;
} fixture_dummy_v1;

static const fixture_dummy_v1 fixture_dummy_table = {sizeof(fixture_dummy_v1), 0};

static struct pylon_instance fixture_instance = {0x46495854u}; /* "FIXT" */

static void fixture_set_error(const pylon_error_sink *err, pylon_status status, const char *code, const char *msg) {
    if (err == NULL || err->set == NULL) return;
    pylon_error e;
    memset(&e, 0, sizeof e);
    e.struct_size = (uint32_t)sizeof e;
    e.status = status;
    e.code.ptr = code;
    e.code.len = strlen(code);
    e.message.ptr = msg;
    e.message.len = strlen(msg);
    err->set(err->ctx, &e);
}

static pylon_status fixture_create(const pylon_host_v1 *host, const char *config_json, size_t config_len,
                                   pylon_instance **out, const pylon_error_sink *err) {
    (void)config_json;
    (void)config_len;
    if (out == NULL) {
        fixture_set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "out is NULL");
        return PYLON_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (host == NULL || host->struct_size < sizeof(uint32_t)) {
        fixture_set_error(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "no host table");
        return PYLON_ERR_INVALID_ARGUMENT;
    }
    *out = &fixture_instance;
    return PYLON_OK;
}

static void fixture_destroy(pylon_instance *instance) {
    (void)instance; /* static instance: nothing to free */
}

static const void *fixture_get_interface(pylon_instance *instance, const char *capability_id) {
    if (instance == NULL || capability_id == NULL) return NULL;
#ifdef FIXTURE_FILES
    if (strcmp(capability_id, FIXTURE_CAPABILITY) == 0) return &fixture_files_table;
#endif
    if (strcmp(capability_id, FIXTURE_CAPABILITY) == 0) return &fixture_dummy_table;
    return NULL;
}

static const char *const fixture_capabilities[] = {FIXTURE_CAPABILITY};

#ifdef FIXTURE_ABI_1
/* The ABI 1.8 shapes, as a plugin built against the 1.x header has them: the host must read
 * its major from the leading fields and refuse it before touching anything else. */
typedef struct fixture_error_1x {
    uint32_t struct_size;
    pylon_status status;
    char code[32];
    char message[1024];
} fixture_error_1x;

typedef struct fixture_descriptor_1x {
    uint32_t struct_size, abi_major, abi_minor, abi_header_hash;
    uint32_t sizeof_pointer, sizeof_value, sizeof_error, sizeof_host;
    const char *plugin_id, *plugin_version, *description;
    const char *const *capabilities;
    uint32_t capability_count, reserved0;
    pylon_status (*create)(const void *host, const char *config_json, size_t config_len, pylon_instance **out,
                           fixture_error_1x *err);
    void (*destroy)(pylon_instance *instance);
    const void *(*get_interface)(pylon_instance *instance, const char *capability_id);
} fixture_descriptor_1x;

/* Never called: the host refuses the file first. */
static pylon_status fixture_create_1x(const void *host, const char *config_json, size_t config_len, pylon_instance **out,
                                      fixture_error_1x *err) {
    (void)host;
    (void)config_json;
    (void)config_len;
    (void)out;
    (void)err;
    (void)fixture_create; /* the 2.x create, unused in this variant */
    abort();
}

static const fixture_descriptor_1x fixture_descriptor_1 = {
    (uint32_t)sizeof(fixture_descriptor_1x), 1, 8, 0x229d925au,
    (uint32_t)sizeof(void *), (uint32_t)sizeof(pylon_value), (uint32_t)sizeof(fixture_error_1x), 104,
    FIXTURE_ID, "0.0.1", "C99 test fixture built against ABI 1.8", fixture_capabilities, 1, 0,
    fixture_create_1x, fixture_destroy, fixture_get_interface,
};

const pylon_plugin_descriptor *pylon_plugin_entry(void) {
    return (const pylon_plugin_descriptor *)(const void *)&fixture_descriptor_1;
}
#else
static const pylon_plugin_descriptor fixture_descriptor = {
    (uint32_t)(FIXTURE_STRUCT_SIZE),
    (uint32_t)(FIXTURE_ABI_MAJOR),
    PYLON_ABI_MINOR,
    PYLON_ABI_HEADER_HASH,
    (uint32_t)sizeof(void *),
    (uint32_t)sizeof(pylon_value),
    (uint32_t)sizeof(pylon_error),
    (uint32_t)sizeof(pylon_host_v1),
    FIXTURE_ID,
    "0.0.1",
    "C99 test fixture with one dummy capability",
    fixture_capabilities,
    1,
    0,
    fixture_create,
    fixture_destroy,
    fixture_get_interface,
};

/* The one exported symbol. Cheap, side-effect free, callable more than once. */
const pylon_plugin_descriptor *pylon_plugin_entry(void) {
    return &fixture_descriptor;
}
#endif
