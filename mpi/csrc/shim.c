/* The C shim: the one place that knows the MPI implementation's handles.
 *
 * Compiled by build.rs with the implementation's compile flags (mpi.h) and
 * linked into libmemwall_mpi.so. It gives the Rust side a fixed ABI: handles
 * as uint64_t (an Open MPI pointer or an MPICH int, converted through
 * uintptr_t both ways, so the value round-trips exactly), MPI_Aint as
 * int64_t, return codes as the library's ints.
 *
 * It calls only PMPI_ entry points, so nothing here re-enters the
 * interposer's own MPI_ symbols. Every MPI symbol it references is declared
 * weak: libmemwall_mpi.so is also preloaded into processes without libmpi
 * (mpirun, orted, shells), where a strong undefined reference would stop the
 * loader (Rust links with -z now). There they resolve to NULL, mw_ready()
 * says 0, and the interposer stays a passthrough.
 */
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#pragma weak PMPI_Type_get_envelope
#pragma weak PMPI_Type_get_contents
#pragma weak PMPI_Type_size_x
#pragma weak PMPI_Type_get_extent_x
#pragma weak PMPI_Type_get_true_extent_x
#pragma weak PMPI_Type_free
#pragma weak PMPI_Get_count
#pragma weak PMPI_Test_cancelled
#pragma weak PMPI_Comm_rank
#pragma weak PMPI_Test
#pragma weak PMPI_Wait

#if defined(OPEN_MPI)
/* Open MPI's predefined handles are addresses of library globals. */
#pragma weak ompi_mpi_packed
#pragma weak ompi_mpi_comm_world
#pragma weak ompi_request_null
#define MW_HANDLES_RESOLVED (&ompi_mpi_packed != NULL && &ompi_mpi_comm_world != NULL && &ompi_request_null != NULL)
#else
/* MPICH and its derivatives: handles are integer constants. */
#define MW_HANDLES_RESOLVED 1
#endif

#define TO_H(x) ((uint64_t)(uintptr_t)(x))
#define DT(h) ((MPI_Datatype)(uintptr_t)(h))
#define COMM(h) ((MPI_Comm)(uintptr_t)(h))
#define REQ(h) ((MPI_Request)(uintptr_t)(h))

int mw_ready(void) {
    return PMPI_Type_get_envelope != NULL && PMPI_Type_get_contents != NULL && PMPI_Type_size_x != NULL &&
           PMPI_Type_get_extent_x != NULL && PMPI_Type_get_true_extent_x != NULL && PMPI_Type_free != NULL &&
           PMPI_Get_count != NULL && PMPI_Test_cancelled != NULL && PMPI_Comm_rank != NULL && PMPI_Test != NULL &&
           PMPI_Wait != NULL && MW_HANDLES_RESOLVED;
}

uint64_t mw_packed(void) { return TO_H(MPI_PACKED); }
uint64_t mw_request_null(void) { return TO_H(MPI_REQUEST_NULL); }
void *mw_status_ignore(void) { return (void *)MPI_STATUS_IGNORE; }
void *mw_statuses_ignore(void) { return (void *)MPI_STATUSES_IGNORE; }

int mw_envelope(uint64_t t, int *ni, int *na, int *nd, int *combiner) {
    return PMPI_Type_get_envelope(DT(t), ni, na, nd, combiner);
}

/* Contents of a derived type: `types` get the returned handles, which the
 * caller frees (mw_type_free) unless they are named. */
int mw_contents(uint64_t t, int ni, int na, int nd, int *ints, int64_t *addrs, uint64_t *types) {
    MPI_Datatype local[64];
    MPI_Datatype *tys = local;
    if (nd > 64) {
        /* uint64_t is at least as wide as a handle: convert in place. */
        tys = (MPI_Datatype *)types;
    }
    int rc = PMPI_Type_get_contents(DT(t), ni, na, nd, ints, (MPI_Aint *)addrs, tys);
    if (rc != MPI_SUCCESS) {
        return rc;
    }
    /* Widen back to front, so an in-place conversion never overwrites a
     * handle not yet read. */
    for (int i = nd - 1; i >= 0; i--) {
        MPI_Datatype d = tys[i];
        types[i] = TO_H(d);
    }
    return MPI_SUCCESS;
}

/* size, lb, extent, true_lb, true_extent. */
int mw_bounds(uint64_t t, int64_t out[5]) {
    MPI_Count size, lb, extent, tlb, textent;
    int rc = PMPI_Type_size_x(DT(t), &size);
    if (rc == MPI_SUCCESS) rc = PMPI_Type_get_extent_x(DT(t), &lb, &extent);
    if (rc == MPI_SUCCESS) rc = PMPI_Type_get_true_extent_x(DT(t), &tlb, &textent);
    if (rc == MPI_SUCCESS) {
        out[0] = (int64_t)size;
        out[1] = (int64_t)lb;
        out[2] = (int64_t)extent;
        out[3] = (int64_t)tlb;
        out[4] = (int64_t)textent;
    }
    return rc;
}

int mw_type_free(uint64_t t) {
    MPI_Datatype d = DT(t);
    return PMPI_Type_free(&d);
}

/* Bytes received into an MPI_PACKED buffer, or -1 if undefined. */
int mw_status_bytes(const void *status, int64_t *bytes) {
    int n = 0;
    int rc = PMPI_Get_count((const MPI_Status *)status, MPI_PACKED, &n);
    *bytes = (rc == MPI_SUCCESS && n != MPI_UNDEFINED) ? (int64_t)n : -1;
    return rc;
}

int mw_status_error(const void *status) { return ((const MPI_Status *)status)->MPI_ERROR; }

int mw_status_cancelled(const void *status, int *flag) {
    return PMPI_Test_cancelled((const MPI_Status *)status, flag);
}

int mw_world_rank(int *rank) { return PMPI_Comm_rank(MPI_COMM_WORLD, rank); }

/* For requests the interposer completes on its own (freed by the user). */
int mw_test(uint64_t *req, int *flag, void *status) {
    MPI_Request r = REQ(*req);
    int rc = PMPI_Test(&r, flag, (MPI_Status *)status);
    *req = TO_H(r);
    return rc;
}

int mw_wait(uint64_t *req, void *status) {
    MPI_Request r = REQ(*req);
    int rc = PMPI_Wait(&r, (MPI_Status *)status);
    *req = TO_H(r);
    return rc;
}
