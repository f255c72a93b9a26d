/* Compiled into every consumer of PylonPluginABI. Holds nothing but layout helpers so the
 * C target has a translation unit; the contract itself is include/pylon_plugin.h. */
#include "pylon_plugin.h"

/* Compile-time layout checks: these sizes are part of ABI 2 on LP64 platforms. */
typedef char pylon_check_value_size[(sizeof(pylon_value) == 24) ? 1 : -1];
typedef char pylon_check_error_size[(sizeof(pylon_error) == 40) ? 1 : -1];
