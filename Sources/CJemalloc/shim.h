#ifndef PYLON_CJEMALLOC_SHIM_H
#define PYLON_CJEMALLOC_SHIM_H
#include <stddef.h>
/* jemalloc's control interface (libjemalloc). Linking the library into pylon-host makes it
 * the process's malloc (it exports malloc/free and comes before libc in the lookup order);
 * only mallctl is declared here, to read its version at startup. */
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
#endif
