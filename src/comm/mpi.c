/* mpi and hier backends (placeholder while shm lands). */
#include <stdlib.h>

#include "internal.h"

int mpi_started_by_launcher(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }
tpar_status mpi_world_init(tpar_comm_t *c, tpar_err_t *err) {
    (void)c;
    return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "mpi backend not yet implemented");
}
tpar_status mpi_split(tpar_comm_t *parent, tpar_comm_t *child, int color, int key) {
    (void)child; (void)color; (void)key;
    return comm_fail(parent, TPAR_ERR_UNSUPPORTED, "mpi backend not yet implemented");
}
tpar_status mpi_exec(tpar_comm_t *c, const coll_t *call) {
    (void)call;
    return comm_fail(c, TPAR_ERR_UNSUPPORTED, "mpi backend not yet implemented");
}
void mpi_free(tpar_comm_t *c) { (void)c; }
tpar_status hier_setup(tpar_comm_t *c, tpar_err_t *err) {
    (void)c;
    return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "hier backend not yet implemented");
}
tpar_status hier_exec(tpar_comm_t *c, const coll_t *call) { return mpi_exec(c, call); }
tpar_status mpi_bootstrap_shm(tpar_comm_t *c, tpar_err_t *err) { return hier_setup(c, err); }
