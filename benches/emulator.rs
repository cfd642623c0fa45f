//! How fast the CPU emulator runs kernels: barriers, warp collectives and
//! tensor-core fragments per second. `cargo bench --bench emulator`.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memwall::emu::{Emulator, HostBind};
use memwall::selftest::{block_sum_plan, mma_plan, shfl_plan, Shfl};

fn emulator(c: &mut Criterion) {
    let mut g = c.benchmark_group("emulator");
    let emu = Emulator::new();

    // 64 blocks x 256 threads x 9 barriers.
    let input = vec![1f32; 256 * 64];
    let mut out = vec![0f32; 64];
    g.throughput(Throughput::Elements(64 * 256 * 9));
    g.bench_function("barrier_thread_arrivals", |b| {
        b.iter(|| emu.launch(&block_sum_plan(64), &mut [HostBind::read(&input), HostBind::write(&mut out)]).unwrap())
    });

    // 32 warps, one shuffle per lane.
    let vals: Vec<i32> = (0..1024).collect();
    let mut shuffled = vec![0i32; 1024];
    g.throughput(Throughput::Elements(1024));
    g.bench_function("shuffle_lanes", |b| {
        b.iter(|| {
            emu.launch(&shfl_plan(32, Shfl::Xor, 1, 32), &mut [HostBind::read(&vals), HostBind::write(&mut shuffled)])
                .unwrap()
        })
    });

    // One warp, one m16n8k16 (4096 multiply-adds).
    let (a, bm, cm) = (vec![0x3c00u16; 256], vec![0x3c00u16; 128], vec![0f32; 128]);
    let mut d = vec![0f32; 128];
    g.throughput(Throughput::Elements(1));
    g.bench_function("mma_m16n8k16", |b| {
        b.iter(|| {
            emu.launch(
                &mma_plan(false),
                &mut [HostBind::read(&a), HostBind::read(&bm), HostBind::read(&cm), HostBind::write(&mut d)],
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, emulator);
criterion_main!(benches);
