/* MPI_Pack timing over block sizes: a vector of doubles with blocks of
 * B bytes every 2B bytes, TOTAL packed bytes per call. Prints one line per
 * block size; the benchmark driver runs it with and without the interposer.
 *
 *   mpirun -np 1 ./bench_pack [TOTAL_BYTES] [MIN_SECONDS]
 */
#include "common.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    long total = argc > 1 ? atol(argv[1]) : 1L << 20;
    double min_seconds = argc > 2 ? atof(argv[2]) : 0.2;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    static const int blocks[] = {8, 16, 64, 512, 4096};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        int bl = blocks[b] / 8;
        int count = (int)(total / blocks[b]);
        if (count < 1) count = 1;
        MPI_Datatype t;
        MPI_Type_vector(count, bl, 2 * bl, MPI_DOUBLE, &t);
        MPI_Type_commit(&t);
        struct tbuf src = tbuf_new(t, 1);
        fill(src.mem, src.len, 1);
        int size = type_size(t);
        unsigned char *out = malloc(size);
        /* The best of 5 trials of min_seconds/5 each. */
        double best = 1e30;
        for (int trial = 0; trial < 5; trial++) {
            int reps = 0, pos;
            double t0 = MPI_Wtime(), dt;
            do {
                pos = 0;
                MPI_Pack(src.base, 1, t, out, size, &pos, MPI_COMM_WORLD);
                reps++;
                dt = MPI_Wtime() - t0;
            } while (dt < min_seconds / 5);
            if (dt / reps < best) best = dt / reps;
        }
        if (rank == 0) {
            printf("pack block_bytes=%d bytes=%d seconds=%.9f\n", blocks[b], size, best);
        }
        free(out);
        free(src.mem);
        MPI_Type_free(&t);
    }
    MPI_Finalize();
    return 0;
}
