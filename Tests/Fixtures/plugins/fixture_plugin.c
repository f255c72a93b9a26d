/*
 * fixture_plugin.c — a tiny, valid Pylon plugin in plain C99, used by
 * Tests/PylonHostTests/PluginABITests.swift to exercise the loader's handshake.
 *
 * It provides one dummy capability ("test.dummy/1") that the host never selects, so it
 * can sit in a plugins folder next to the real store without changing what is served.
 *
 * Compile-time overrides (to build deliberately broken variants):
 *   -DFIXTURE_ID='"some.id"'      plugin_id (default "test.fixture")
 *   -DFIXTURE_ABI_MAJOR=2         abi_major in the descriptor (default PYLON_ABI_MAJOR)
 *   -DFIXTURE_STRUCT_SIZE=16      struct_size in the descriptor (default the real size)
 */
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

#define FIXTURE_CAPABILITY "test.dummy/1"

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

static void fixture_set_error(pylon_error *err, pylon_status status, const char *code, const char *msg) {
    if (err == NULL) return;
    err->status = status;
    strncpy(err->code, code, sizeof(err->code) - 1);
    err->code[sizeof(err->code) - 1] = '\0';
    strncpy(err->message, msg, sizeof(err->message) - 1);
    err->message[sizeof(err->message) - 1] = '\0';
}

static pylon_status fixture_create(const pylon_host_v1 *host, const char *config_json, size_t config_len,
                                   pylon_instance **out, pylon_error *err) {
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
    if (strcmp(capability_id, FIXTURE_CAPABILITY) == 0) return &fixture_dummy_table;
    return NULL;
}

static const char *const fixture_capabilities[] = {FIXTURE_CAPABILITY};

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
