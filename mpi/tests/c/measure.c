/* The measure program: writes the profile the interposer's method model
 * reads (format: mpi/src/model.rs). Run with 2 ranks, under the interposer
 * (its GPU hooks are found with dlsym; without them, or without a GPU, only
 * the host quantities are measured):
 *
 *   LD_PRELOAD=libmemwall_mpi.so mpirun -np 2 ./measure PROFILE_PATH
 *
 * mpi_host / mpi_device: half a ping-pong round trip of MPI_BYTE messages
 * between ranks 0 and 1 (mpi_device only when the MPI is CUDA-aware:
 * MPIX_Query_cuda_support() says so, or MEMWALL_MPI_CUDA_AWARE=1).
 * pack_device, pack_mapped, d2h, h2d: rank 0's GPU, through the
 * interposer's memwall_mpi_gpu_measure hook.
 */
#define _GNU_SOURCE
#include "common.h"

#include <dlfcn.h>

typedef int (*measure_fn)(uint64_t, int, double *);
typedef void *(*alloc_fn)(uint64_t);
typedef void (*free_fn)(void *);

static double pingpong(void *buf, int bytes, int rank, int reps) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < reps; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / reps / 2;
}

static int cuda_aware(void) {
    const char *e = getenv("MEMWALL_MPI_CUDA_AWARE");
    if (e) return strcmp(e, "1") == 0;
    int (*query)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "MPIX_Query_cuda_support");
    return query ? query() : 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    const char *path = argc > 1 ? argv[1] : getenv("MEMWALL_MPI_PROFILE");
    if (n != 2 || !path) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -np 2 measure PROFILE_PATH\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    long max_bytes = argc > 2 ? atol(argv[2]) : 16L << 20;
    measure_fn gpu_measure = (measure_fn)dlsym(RTLD_DEFAULT, "memwall_mpi_gpu_measure");
    alloc_fn gpu_alloc = (alloc_fn)dlsym(RTLD_DEFAULT, "memwall_mpi_gpu_alloc");
    free_fn gpu_free = (free_fn)dlsym(RTLD_DEFAULT, "memwall_mpi_gpu_free");
    double probe[4];
    int local_gpu = gpu_measure && gpu_measure(4096, 1, probe) == 0 && gpu_alloc && gpu_free;
    int both_gpu = 0;
    MPI_Allreduce(&local_gpu, &both_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int device_mpi = both_gpu && cuda_aware();

    FILE *f = NULL;
    if (rank == 0) {
        f = fopen(path, "w");
        if (!f) {
            perror(path);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        fprintf(f, "memwall-mpi-profile 1\n# quantity bytes seconds (measure.c, %d ranks)\n", n);
    }
    unsigned char *host = malloc(max_bytes);
    memset(host, 1, max_bytes);
    void *dev = device_mpi ? gpu_alloc((uint64_t)max_bytes) : NULL;
    for (long bytes = 1024; bytes <= max_bytes; bytes *= 4) {
        int reps = bytes < (1 << 16) ? 200 : bytes < (1 << 22) ? 20 : 5;
        double t = pingpong(host, (int)bytes, rank, reps);
        if (f) fprintf(f, "mpi_host %ld %.6e\n", bytes, t);
        if (dev) {
            t = pingpong(dev, (int)bytes, rank, reps);
            if (f) fprintf(f, "mpi_device %ld %.6e\n", bytes, t);
        }
        double g[4];
        if (both_gpu && rank == 0 && gpu_measure((uint64_t)bytes, reps, g) == 0) {
            fprintf(f, "pack_device %ld %.6e\npack_mapped %ld %.6e\nd2h %ld %.6e\nh2d %ld %.6e\n", bytes, g[0],
                    bytes, g[1], bytes, g[2], bytes, g[3]);
        }
    }
    if (dev) gpu_free(dev);
    free(host);
    if (f) {
        fclose(f);
        printf("measure: wrote %s (gpu=%s, cuda-aware=%s)\n", path, both_gpu ? "yes" : "no", device_mpi ? "yes" : "no");
    }
    MPI_Finalize();
    return 0;
}
