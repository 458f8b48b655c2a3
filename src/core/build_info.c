/* What this build was compiled with, for `tpar info` and bug reports. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "tpar/core.h"
#ifdef TPAR_HAVE_MPI
#include <mpi.h>
#endif

#ifndef TPAR_BUILD_TYPE
#define TPAR_BUILD_TYPE "unknown"
#endif
#ifndef TPAR_C_FLAGS
#define TPAR_C_FLAGS ""
#endif
#ifndef TPAR_SANITIZE_STR
#define TPAR_SANITIZE_STR ""
#endif

void tpar_build_info(tpar_build_info_t *out) {
    out->version = TPAR_VERSION_STRING;
    out->build_type = TPAR_BUILD_TYPE;
#if defined(__clang__)
    out->compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    out->compiler = "gcc " __VERSION__;
#else
    out->compiler = "unknown";
#endif
    out->c_flags = TPAR_C_FLAGS;
    out->blas = openblas_get_config();
    out->sanitize = TPAR_SANITIZE_STR;
#ifdef TPAR_HAVE_MPI
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    out->with_mpi = 1;
    /* MPI_Get_library_version may be called before MPI_Init. */
    if (MPI_Get_library_version(version, &len) != MPI_SUCCESS) len = 0;
    version[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = '\0';
    version[strcspn(version, ",\n")] = '\0'; /* first clause of the first line */
    snprintf(out->mpi_library, sizeof out->mpi_library, "%s", version);
#else
    out->with_mpi = 0;
    out->mpi_library[0] = '\0';
#endif
}
