//! Strided copy (2-D pack) on the CPU and, where there is one, the GPU,
//! beside a plain copy of the same bytes in the same run.
//!
//! `cargo bench --bench strided_copy`. Throughput is reported per packed byte.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use memwall::strided::StridedCopy;

const TOTAL: u64 = 16 << 20;
const BLOCKS: [u64; 5] = [8, 64, 256, 1024, 4096];

fn cpu(c: &mut Criterion) {
    let mut g = c.benchmark_group("strided_copy_cpu_16MiB");
    g.throughput(Throughput::Bytes(TOTAL));
    let src = vec![1u8; (2 * TOTAL) as usize];
    let mut dst = vec![0u8; TOTAL as usize];
    g.bench_function("memcpy", |b| b.iter(|| dst.copy_from_slice(&src[..TOTAL as usize])));
    for block in BLOCKS {
        let copy = StridedCopy::pack(TOTAL / block, block, 2 * block as i64);
        g.bench_with_input(BenchmarkId::new("pack", format!("{block}B")), &copy, |b, copy| {
            b.iter(|| copy.run_cpu(&src, &mut dst).unwrap())
        });
    }
    g.finish();
}

fn gpu(c: &mut Criterion) {
    let Some(gpu) = memwall::gpu::gpu_or_skip("bench strided_copy_gpu") else { return };
    let stream = gpu.new_stream().unwrap();
    let mut g = c.benchmark_group("strided_copy_gpu_16MiB");
    g.throughput(Throughput::Bytes(TOTAL));
    let src = stream.alloc_zeros::<u8>((2 * TOTAL) as usize).unwrap();
    let mut dst = stream.alloc_zeros::<u8>(TOTAL as usize).unwrap();
    g.bench_function("memcpy_dtod", |b| {
        b.iter(|| {
            stream.memcpy_dtod(&src.slice(..TOTAL as usize), &mut dst).unwrap();
            stream.synchronize().unwrap();
        })
    });
    for block in BLOCKS {
        let copy = StridedCopy::pack(TOTAL / block, block, 2 * block as i64);
        g.bench_with_input(BenchmarkId::new("pack", format!("{block}B")), &copy, |b, copy| {
            b.iter(|| {
                copy.run_gpu(&gpu, &stream, &src, &mut dst).unwrap();
                stream.synchronize().unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
