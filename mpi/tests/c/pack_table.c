/* MPI_Pack / MPI_Unpack over the type table, checked against the
 * library's own PMPI_Pack / PMPI_Unpack in the same process, byte for byte
 * (the interposer defines MPI_Pack, never PMPI_Pack). Rank 0 prints one
 * hash line per case: the test driver compares them between runs with and
 * without the interposer. Also checks that error returns are the library's.
 *
 *   mpirun -np 2 ./pack_table
 */
#include "common.h"

static int failures;

static void fail(const char *what, const char *name, int count) {
    fprintf(stderr, "FAIL %s %s count=%d\n", what, name, count);
    failures++;
}

static void check_case(int rank, const struct tcase *c, int count, int start) {
    int size = type_size(c->type) * count;
    struct tbuf src = tbuf_new(c->type, count);
    fill(src.mem, src.len, (uint32_t)(count * 7919 + size));

    /* Pack at a non-zero position, then a second pack after it. */
    int outsize = start + 2 * size;
    unsigned char *ours = malloc(outsize), *lib = malloc(outsize);
    memset(ours, 0xAB, outsize);
    memset(lib, 0xAB, outsize);
    int p_ours = start, p_lib = start;
    int rc1 = MPI_Pack(src.base, count, c->type, ours, outsize, &p_ours, MPI_COMM_WORLD);
    int rc2 = PMPI_Pack(src.base, count, c->type, lib, outsize, &p_lib, MPI_COMM_WORLD);
    rc1 |= MPI_Pack(src.base, count, c->type, ours, outsize, &p_ours, MPI_COMM_WORLD);
    rc2 |= PMPI_Pack(src.base, count, c->type, lib, outsize, &p_lib, MPI_COMM_WORLD);
    if (rc1 != rc2 || p_ours != p_lib || p_ours != start + 2 * size || memcmp(ours, lib, outsize) != 0) {
        fail("pack", c->name, count);
    }

    /* Unpack into sentinel-filled buffers: gaps must stay untouched. */
    struct tbuf a = tbuf_new(c->type, count), b = tbuf_new(c->type, count);
    memset(a.mem, 0xEE, a.len);
    memset(b.mem, 0xEE, b.len);
    int q_ours = start, q_lib = start;
    rc1 = MPI_Unpack(lib, outsize, &q_ours, a.base, count, c->type, MPI_COMM_WORLD);
    rc2 = PMPI_Unpack(lib, outsize, &q_lib, b.base, count, c->type, MPI_COMM_WORLD);
    if (rc1 != rc2 || q_ours != q_lib || memcmp(a.mem, b.mem, a.len) != 0) {
        fail("unpack", c->name, count);
    }
    if (rank == 0) {
        printf("%-28s count=%d size=%6d packed=%016llx unpacked=%016llx\n", c->name, count, size,
               (unsigned long long)fnv(lib, outsize), (unsigned long long)fnv(a.mem, a.len));
    }
    free(ours);
    free(lib);
    free(src.mem);
    free(a.mem);
    free(b.mem);
}

/* Error returns are the library's: a pack into too small a buffer. Open MPI
 * returns MPI_ERR_TRUNCATE; MPICH 4.0 returns MPI_SUCCESS and writes past
 * outsize, so the buffer has room behind the size passed and the check is
 * only that the interposer answers exactly as the library does. */
static void check_errors(int rank) {
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    double src[64] = {0};
    unsigned char out[256];
    int p1 = 0, p2 = 0;
    MPI_Datatype t = types[0].type; /* 64 bytes of data */
    int rc1 = MPI_Pack(src, 1, t, out, 16, &p1, MPI_COMM_WORLD);
    int rc2 = PMPI_Pack(src, 1, t, out, 16, &p2, MPI_COMM_WORLD);
    int c1, c2;
    MPI_Error_class(rc1, &c1);
    MPI_Error_class(rc2, &c2);
    if (rc1 != rc2 || p1 != p2) {
        fprintf(stderr, "FAIL short pack: rc %d position %d vs library rc %d position %d\n", rc1, p1, rc2, p2);
        failures++;
    }
    if (rank == 0) {
        printf("short_pack_error_class=%d\n", c1);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    make_types();
    for (int i = 0; i < ntypes; i++) {
        check_case(rank, &types[i], 1, 0);
        check_case(rank, &types[i], 3, 5);
    }
    check_errors(rank);
    int cases = 2 * ntypes;
    free_types();
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("pack_table: %s (%d cases, %d failures)\n", total ? "FAIL" : "PASS", cases, total);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}
