/* Point-to-point with derived types around a ring (rank r sends to r+1),
 * over the type table and every way of sending and completing: blocking,
 * Isend/Irecv with Wait, Waitall, Test, Testall, Waitany, Waitsome in
 * different orders, Sendrecv, Request_free. Every received buffer, gaps
 * included, must equal what the library's own PMPI_Pack/PMPI_Unpack give.
 * Also: a partial receive (a shorter message), MPI_ANY_SOURCE/ANY_TAG and
 * the status, a long loop that must not grow memory, and threads under
 * MPI_THREAD_MULTIPLE.
 *
 *   mpirun -np 2 ./p2p      (any even number of ranks; -np 4 too)
 */
#include "common.h"

#include <pthread.h>
#include <unistd.h>

static int rank, nranks, failures, checks;

enum mode { BLOCKING, WAITALL, WAIT_REVERSE, TEST_LOOP, SENDRECV, WAITANY, TESTALL, WAITSOME, REQUEST_FREE, NMODES };
static const char *mode_name[NMODES] = {"blocking", "waitall", "wait_reverse", "test_loop", "sendrecv",
                                        "waitany", "testall", "waitsome", "request_free"};

static uint32_t seed_of(int sender, int t, int mode) { return (uint32_t)(sender * 100003 + t * 131 + mode); }

/* What `sender`'s message of `count` elements of type `t` looks like once
 * received into a 0xEE-filled buffer, by the library alone. */
static struct tbuf expected(MPI_Datatype t, int count, int sender, uint32_t seed) {
    (void)sender;
    struct tbuf s = tbuf_new(t, count), e = tbuf_new(t, count);
    fill(s.mem, s.len, seed);
    memset(e.mem, 0xEE, e.len);
    int size = type_size(t) * count, p = 0;
    unsigned char *packed = malloc(size > 0 ? size : 1);
    PMPI_Pack(s.base, count, t, packed, size, &p, MPI_COMM_WORLD);
    p = 0;
    PMPI_Unpack(packed, size, &p, e.base, count, t, MPI_COMM_WORLD);
    free(packed);
    free(s.mem);
    return e;
}

static void check(int ok, const char *what, const char *name) {
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "rank %d: FAIL %s %s\n", rank, what, name);
    }
}

static void exchange(int ti, enum mode m) {
    MPI_Datatype t = types[ti].type;
    const int count = 2, tag = 7 + m;
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
    struct tbuf s = tbuf_new(t, count), r = tbuf_new(t, count);
    fill(s.mem, s.len, seed_of(rank, ti, m));
    memset(r.mem, 0xEE, r.len);
    MPI_Request req[2];
    MPI_Status st[2];
    int flag = 0, idx, done = 0, outcount, indices[2];
    switch (m) {
    case BLOCKING:
        if (rank % 2 == 0) {
            MPI_Send(s.base, count, t, right, tag, MPI_COMM_WORLD);
            MPI_Recv(r.base, count, t, left, tag, MPI_COMM_WORLD, &st[0]);
        } else {
            MPI_Recv(r.base, count, t, left, tag, MPI_COMM_WORLD, &st[0]);
            MPI_Send(s.base, count, t, right, tag, MPI_COMM_WORLD);
        }
        break;
    case WAITALL:
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[1]);
        MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
        break;
    case WAIT_REVERSE:
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[1]);
        MPI_Wait(&req[1], &st[1]);
        MPI_Wait(&req[0], MPI_STATUS_IGNORE);
        break;
    case TEST_LOOP:
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[1]);
        for (int k = 0; k < 2; k++) {
            do {
                MPI_Test(&req[k], &flag, MPI_STATUS_IGNORE);
            } while (!flag);
        }
        break;
    case SENDRECV:
        MPI_Sendrecv(s.base, count, t, right, tag, r.base, count, t, left, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        break;
    case WAITANY:
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[1]);
        for (int k = 0; k < 2; k++) {
            MPI_Waitany(2, req, &idx, &st[0]);
        }
        break;
    case TESTALL:
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[1]);
        do {
            MPI_Testall(2, req, &flag, st);
        } while (!flag);
        break;
    case WAITSOME:
        MPI_Irecv(r.base, count, t, left, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[1]);
        while (done < 2) {
            MPI_Waitsome(2, req, &outcount, indices, st);
            done += outcount;
        }
        break;
    case REQUEST_FREE:
        MPI_Isend(s.base, count, t, right, tag, MPI_COMM_WORLD, &req[0]);
        MPI_Request_free(&req[0]);
        MPI_Recv(r.base, count, t, left, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        /* The peer has our message once it has sent its own reply. */
        MPI_Barrier(MPI_COMM_WORLD);
        break;
    default:
        break;
    }
    struct tbuf e = expected(t, count, left, seed_of(left, ti, m));
    check(memcmp(e.mem, r.mem, r.len) == 0, mode_name[m], types[ti].name);
    free(e.mem);
    free(s.mem);
    free(r.mem);
}

/* A shorter message: 11 doubles into 2 elements of a vector of 8 doubles:
 * one whole element and the first 3 doubles of the next. */
static void partial(void) {
    MPI_Datatype v = types[0].type; /* vector(4, 2, 5) of double */
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
    double d[11];
    for (int i = 0; i < 11; i++) d[i] = rank * 100 + i;
    struct tbuf r = tbuf_new(v, 2);
    memset(r.mem, 0xEE, r.len);
    MPI_Status st;
    MPI_Request q;
    MPI_Isend(d, 11, MPI_DOUBLE, right, 99, MPI_COMM_WORLD, &q);
    MPI_Recv(r.base, 2, v, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
    MPI_Wait(&q, MPI_STATUS_IGNORE);
    int cnt, elems;
    MPI_Get_count(&st, v, &cnt);
    MPI_Get_elements(&st, MPI_DOUBLE, &elems);
    check(cnt == MPI_UNDEFINED && elems == 11, "partial_count", "vector");
    check(st.MPI_SOURCE == left && st.MPI_TAG == 99, "any_source_status", "vector");
    /* Expected: the 11 doubles then the receive buffer's own bytes. */
    unsigned char packed[128];
    for (int i = 0; i < 11; i++) {
        double x = left * 100 + i;
        memcpy(packed + 8 * i, &x, 8);
    }
    memset(packed + 88, 0xEE, 40);
    struct tbuf e = tbuf_new(v, 2);
    memset(e.mem, 0xEE, e.len);
    int p = 0;
    PMPI_Unpack(packed, 128, &p, e.base, 2, v, MPI_COMM_WORLD);
    check(memcmp(e.mem, r.mem, r.len) == 0, "partial_data", "vector");
    if (rank == 0) {
        printf("partial: count=%s elements=%d data=%016llx\n", cnt == MPI_UNDEFINED ? "undefined" : "defined", elems,
               (unsigned long long)fnv(r.mem, r.len));
    }
    free(e.mem);
    free(r.mem);
}

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Many iterations must not grow memory (requests, buffers, types). */
static void long_loop(int iters) {
    int ti = 1; /* vector_blk1 */
    MPI_Datatype t = types[ti].type;
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
    const int count = 50; /* 60 KB a message: a leak would show in MBs */
    struct tbuf s = tbuf_new(t, count), r = tbuf_new(t, count);
    fill(s.mem, s.len, 5);
    long before = 0;
    for (int i = 0; i < iters; i++) {
        if (i == iters / 10) before = rss_kib();
        MPI_Datatype dup;
        MPI_Type_dup(t, &dup);
        MPI_Type_commit(&dup);
        MPI_Request q[2];
        MPI_Irecv(r.base, count, dup, left, 5, MPI_COMM_WORLD, &q[0]);
        MPI_Isend(s.base, count, t, right, 5, MPI_COMM_WORLD, &q[1]);
        MPI_Waitall(2, q, MPI_STATUSES_IGNORE);
        MPI_Type_free(&dup);
    }
    long grown = rss_kib() - before;
    check(grown < 16 * 1024, "long_loop_memory", "vector_blk1");
    if (grown >= 16 * 1024) fprintf(stderr, "rank %d: memory grew by %ld KiB\n", rank, grown);
    free(s.mem);
    free(r.mem);
}

struct thread_arg {
    int id, iters, bad;
};

static void *thread_main(void *p) {
    struct thread_arg *a = p;
    MPI_Datatype t = types[6].type; /* subarray3d_c */
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
    struct tbuf s = tbuf_new(t, 1), r = tbuf_new(t, 1);
    for (int i = 0; i < a->iters; i++) {
        uint32_t seed = (uint32_t)(a->id * 1000 + i);
        fill(s.mem, s.len, seed ^ (uint32_t)rank);
        memset(r.mem, 0xEE, r.len);
        MPI_Request q[2];
        MPI_Irecv(r.base, 1, t, left, 1000 + a->id, MPI_COMM_WORLD, &q[0]);
        MPI_Isend(s.base, 1, t, right, 1000 + a->id, MPI_COMM_WORLD, &q[1]);
        MPI_Waitall(2, q, MPI_STATUSES_IGNORE);
        struct tbuf e = expected(t, 1, left, seed ^ (uint32_t)left);
        if (memcmp(e.mem, r.mem, r.len) != 0) a->bad++;
        free(e.mem);
    }
    free(s.mem);
    free(r.mem);
    return NULL;
}

static void threads(int provided) {
    if (provided != MPI_THREAD_MULTIPLE) {
        if (rank == 0) printf("threads: skipped (provided %d)\n", provided);
        return;
    }
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){i, 50, 0};
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        check(args[i].bad == 0, "threads", "subarray3d_c");
    }
    if (rank == 0) printf("threads: ran 4 threads\n");
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (nranks % 2) {
        if (rank == 0) fprintf(stderr, "p2p needs an even number of ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    make_types();
    for (int ti = 0; ti < ntypes; ti++) {
        for (int m = 0; m < NMODES; m++) {
            exchange(ti, (enum mode)m);
        }
    }
    partial();
    long_loop(iters);
    threads(provided);
    free_types();
    int total = 0, all_checks = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&checks, &all_checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("p2p: %s (%d checks, %d failures)\n", total ? "FAIL" : "PASS", all_checks, total);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}
