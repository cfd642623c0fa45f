/* Shared by the interposer's C test programs: the table of derived types,
 * buffers sized from a type's bounds, deterministic fill patterns, hashes.
 * The programs use only standard MPI, so they run with or without the
 * interposer, and with Open MPI or MPICH.
 */
#ifndef MEMWALL_MPI_TEST_COMMON_H
#define MEMWALL_MPI_TEST_COMMON_H

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPES 40

struct tcase {
    const char *name;
    MPI_Datatype type;
};

static int ntypes;
static struct tcase types[MAX_TYPES];

static inline void add(const char *name, MPI_Datatype t) {
    MPI_Type_commit(&t);
    types[ntypes].name = name;
    types[ntypes].type = t;
    ntypes++;
}

/* Builds and commits the table: every constructor, 2-D and 3-D subarrays
 * in both orders, resized and nested types, one type the interposer cannot
 * express (darray) and one dense type. */
static inline void make_types(void) {
    MPI_Datatype t, u, v;
    ntypes = 0;

    MPI_Type_vector(4, 2, 5, MPI_DOUBLE, &t);
    add("vector", t);
    MPI_Type_vector(300, 1, 3, MPI_FLOAT, &t);
    add("vector_blk1", t);
    MPI_Type_create_hvector(3, 2, 40, MPI_INT, &t);
    add("hvector", t);
    MPI_Type_create_hvector(3, 1, -24, MPI_DOUBLE, &t);
    add("hvector_negative", t);

    int sizes2[2] = {10, 12}, subs2[2] = {4, 5}, starts2[2] = {2, 3};
    MPI_Type_create_subarray(2, sizes2, subs2, starts2, MPI_ORDER_C, MPI_DOUBLE, &t);
    add("subarray2d_c", t);
    MPI_Type_create_subarray(2, sizes2, subs2, starts2, MPI_ORDER_FORTRAN, MPI_DOUBLE, &t);
    add("subarray2d_f", t);
    int sizes3[3] = {8, 9, 10}, subs3[3] = {3, 4, 5}, starts3[3] = {1, 2, 3};
    MPI_Type_create_subarray(3, sizes3, subs3, starts3, MPI_ORDER_C, MPI_FLOAT, &t);
    add("subarray3d_c", t);
    MPI_Type_create_subarray(3, sizes3, subs3, starts3, MPI_ORDER_FORTRAN, MPI_FLOAT, &t);
    add("subarray3d_f", t);
    int face[3] = {1, 6, 6}, fstart[3] = {3, 1, 1}, cube[3] = {8, 8, 8};
    MPI_Type_create_subarray(3, cube, face, fstart, MPI_ORDER_C, MPI_DOUBLE, &t);
    add("subarray3d_face", t);

    int bl[3] = {1, 3, 2}, dis[3] = {0, 4, 9};
    MPI_Type_indexed(3, bl, dis, MPI_INT, &t);
    add("indexed", t);
    int hbl[2] = {2, 1};
    MPI_Aint hdis[2] = {24, 0};
    MPI_Type_create_hindexed(2, hbl, hdis, MPI_DOUBLE, &t);
    add("hindexed_unordered", t);
    int ibd[3] = {0, 5, 11};
    MPI_Type_create_indexed_block(3, 2, ibd, MPI_SHORT, &t);
    add("indexed_block", t);
    MPI_Aint hbd[3] = {0, 17, 40};
    MPI_Type_create_hindexed_block(3, 3, hbd, MPI_CHAR, &t);
    add("hindexed_block", t);

    int sbl[3] = {1, 1, 3};
    MPI_Aint sdis[3] = {0, 8, 16};
    MPI_Datatype sty[3] = {MPI_INT, MPI_DOUBLE, MPI_CHAR};
    MPI_Type_create_struct(3, sbl, sdis, sty, &t);
    add("struct", t);
    int pbl[2] = {1, 1};
    MPI_Aint pdis[2] = {0, 8};
    MPI_Datatype pty[2] = {MPI_DOUBLE, MPI_CHAR};
    MPI_Type_create_struct(2, pbl, pdis, pty, &t);
    add("struct_padding", t);
    MPI_Datatype dity[2] = {MPI_DOUBLE_INT, MPI_SHORT};
    MPI_Aint didis[2] = {0, 16};
    MPI_Type_create_struct(2, pbl, didis, dity, &t);
    add("struct_pair_member", t);

    MPI_Type_vector(2, 1, 3, MPI_DOUBLE, &u);
    MPI_Type_create_resized(u, 0, 16, &t);
    add("resized_overlapping", t);
    MPI_Type_create_resized(u, -8, 64, &t);
    add("resized_negative_lb", t);
    MPI_Type_free(&u);

    /* Nested types. */
    MPI_Type_create_struct(3, sbl, sdis, sty, &u);
    MPI_Type_vector(3, 2, 4, u, &t);
    add("vector_of_struct", t);
    MPI_Type_free(&u);
    MPI_Type_vector(2, 1, 2, MPI_DOUBLE, &u);
    MPI_Type_create_resized(u, 0, 8, &v);
    MPI_Type_free(&u);
    int ns[2] = {6, 7}, nsub[2] = {3, 2}, nst[2] = {1, 4};
    MPI_Type_create_subarray(2, ns, nsub, nst, MPI_ORDER_C, v, &t);
    add("subarray_of_resized_vector", t);
    MPI_Type_free(&v);
    MPI_Type_indexed(3, bl, dis, MPI_INT, &u);
    MPI_Type_create_hvector(2, 1, 100, u, &t);
    add("hvector_of_indexed", t);
    MPI_Type_free(&u);
    MPI_Type_create_subarray(2, sizes2, subs2, starts2, MPI_ORDER_FORTRAN, MPI_INT, &u);
    MPI_Type_contiguous(2, u, &t);
    add("contiguous_of_subarray", t);
    MPI_Type_free(&u);
    MPI_Type_vector(5, 3, 7, MPI_LONG_LONG, &u);
    MPI_Type_dup(u, &t);
    add("dup_of_vector", t);
    MPI_Type_free(&u);

    MPI_Type_contiguous(7, MPI_DOUBLE, &t);
    add("contiguous_dense", t);
    int gs[2] = {8, 8}, ds[2] = {MPI_DISTRIBUTE_BLOCK, MPI_DISTRIBUTE_CYCLIC};
    int da[2] = {MPI_DISTRIBUTE_DFLT_DARG, 2}, ps[2] = {2, 2};
    MPI_Type_create_darray(4, 1, 2, gs, ds, da, ps, MPI_ORDER_C, MPI_DOUBLE, &t);
    add("darray_passthrough", t);
}

static inline void free_types(void) {
    for (int i = 0; i < ntypes; i++) {
        MPI_Type_free(&types[i].type);
    }
    ntypes = 0;
}

/* A buffer holding `count` elements of `t`: `base` is the address to pass to
 * MPI, `mem`/`len` the whole allocation (with 64 guard bytes each side). */
struct tbuf {
    unsigned char *mem, *base;
    size_t len;
};

static inline struct tbuf tbuf_new(MPI_Datatype t, int count) {
    MPI_Aint lb, extent, tlb, textent;
    MPI_Type_get_extent(t, &lb, &extent);
    MPI_Type_get_true_extent(t, &tlb, &textent);
    MPI_Aint reach = extent * (count - 1);
    MPI_Aint lo = tlb + (reach < 0 ? reach : 0);
    MPI_Aint hi = tlb + textent + (reach > 0 ? reach : 0);
    struct tbuf b;
    b.len = (size_t)(hi - lo) + 128;
    b.mem = malloc(b.len);
    b.base = b.mem + 64 - lo;
    return b;
}

/* Deterministic bytes from a seed. */
static inline void fill(unsigned char *p, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 8);
    }
}

static inline uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

static inline int type_size(MPI_Datatype t) {
    int s;
    MPI_Type_size(t, &s);
    return s;
}

#endif
