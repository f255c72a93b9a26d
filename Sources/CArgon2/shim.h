#ifndef PYLON_CARGON2_SHIM_H
#define PYLON_CARGON2_SHIM_H
/* The reference Argon2 library (Debian's libargon2-dev): password hashes as PHC strings. */
#include <argon2.h>
#endif
