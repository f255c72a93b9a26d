/*
 * The plugin half every fixture sim shares: one instance (nothing to keep), the
 * `pylon.shard.sim/1` interface `table` (a `static const pylon_shard_sim_v1` the including
 * file defines before the macro), the descriptor and the entry point.
 *
 *   PYLON_FIXTURE_SIM_PLUGIN("pylon.test.name", "what the fixture is for")
 */
#ifndef PYLON_FIXTURE_SIM_PLUGIN_H
#define PYLON_FIXTURE_SIM_PLUGIN_H

#include <string.h>

#include "pylon_plugin.h"

#define PYLON_FIXTURE_SIM_PLUGIN(ID, DESCRIPTION)                                                                  \
    static int fixture_instance;                                                                                   \
    static pylon_status plugin_create(const pylon_host_v1 *host, const char *c, size_t n, pylon_instance **out,   \
                                      const pylon_error_sink *err) {                                               \
        (void)host, (void)c, (void)n, (void)err;                                                                   \
        *out = (pylon_instance *)&fixture_instance;                                                                \
        return PYLON_OK;                                                                                           \
    }                                                                                                              \
    static void plugin_destroy(pylon_instance *i) { (void)i; }                                                     \
    static const void *plugin_get_interface(pylon_instance *i, const char *cap) {                                  \
        return i != NULL && cap != NULL && strcmp(cap, PYLON_CAP_SHARD_SIM) == 0 ? &table : NULL;                  \
    }                                                                                                              \
    static const char *const caps[] = {PYLON_CAP_SHARD_SIM};                                                       \
    static const pylon_plugin_descriptor descriptor = {                                                            \
        (uint32_t)sizeof(pylon_plugin_descriptor), PYLON_ABI_MAJOR, PYLON_ABI_MINOR, PYLON_ABI_HEADER_HASH,        \
        (uint32_t)sizeof(void *), (uint32_t)sizeof(pylon_value), (uint32_t)sizeof(pylon_error),                    \
        (uint32_t)sizeof(pylon_host_v1), ID, "0.1.0", DESCRIPTION, caps, 1, 0, plugin_create, plugin_destroy,      \
        plugin_get_interface,                                                                                      \
    };                                                                                                             \
    const pylon_plugin_descriptor *pylon_plugin_entry(void) { return &descriptor; }

#endif
