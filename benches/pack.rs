//! Datatype pack bandwidth beside memcpy of the same bytes, in the same run.
//!
//! `cargo bench --bench pack` prints one table row per (object, block size,
//! packed size): GB/s of MPI_Pack-style packing on the CPU (and on the GPU
//! when there is one, beside a device-to-device copy), and the ratio to the
//! copy. 2-D objects are vectors (blocks of `block` bytes, stride 2x block);
//! 3-D objects are subarrays of a cube whose innermost extent is `block`
//! bytes of a 4x larger row. Under `cargo test` (no `--bench`), one small
//! case runs as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use memwall::datatype::{Committed, Datatype, Order};

/// Median seconds of one call of `f`, over samples of enough calls each to
/// last ~20 us (so the clock's own cost, ~20 ns a read here, does not count
/// in a 1 KiB pack), repeated to fill ~`budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(10));
    let batch = ((20e-6 / once.as_secs_f64()) as usize).clamp(1, 100_000);
    let sample = once.as_secs_f64() * batch as f64;
    let reps = ((budget.as_secs_f64() / sample) as usize).clamp(3, 1000);
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_secs_f64() / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[reps / 2]
}

fn object(dims: u32, block: u64, total: u64) -> Datatype {
    let byte = Datatype::byte();
    let rows = (total / block).max(1) as i64;
    match dims {
        2 => byte.contiguous(block as i64).unwrap().hvector(rows, 1, 2 * block as i64).unwrap(),
        _ => {
            // rows = n * n rows of `block` bytes, each row 4 blocks long.
            let n = (rows as f64).sqrt().ceil() as i64;
            let row = block as i64;
            byte.subarray(&[n, n, 4 * row], &[n, n, row], &[0, 0, row], Order::C).unwrap()
        }
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if bench { 150 } else { 1 });
    let blocks: &[u64] = if bench { &[1, 4, 16, 64, 128, 512] } else { &[64] };
    let sizes: &[u64] = if bench { &[1 << 10, 1 << 16, 1 << 20, 16 << 20, 64 << 20] } else { &[1 << 12] };
    let gpu = if bench { memwall::gpu::gpu_or_skip("bench pack (GPU columns)") } else { None };

    println!(
        "{:>3} {:>6} {:>9} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "dim", "block", "bytes", "cpu GB/s", "memcpy", "ratio", "gpu GB/s", "d2d", "ratio"
    );
    for &dims in &[2u32, 3] {
        for &block in blocks {
            for &total in sizes {
                if total < block * 4 {
                    continue;
                }
                let t = object(dims, block, total);
                let c = Committed::new(&t).unwrap();
                let (lo, hi) = c.layout().span();
                let origin = (-lo).max(0) as usize;
                let src = vec![1u8; (origin as i128 + hi) as usize];
                let n = c.pack_size(1).unwrap();
                let mut dst = vec![0u8; n];
                let pack = time(budget, || {
                    let mut pos = 0;
                    c.pack(black_box(&src), origin, 1, &mut dst, &mut pos).unwrap();
                });
                let copy = time(budget, || dst.copy_from_slice(black_box(&src[origin..origin + n])));
                let gb = |s: f64| n as f64 / s / 1e9;
                let mut gpu_cols = String::from("        -         -      -");
                if let Some(gpu) = &gpu {
                    let stream = gpu.new_stream().unwrap();
                    let dsrc = stream.clone_htod(&src).unwrap();
                    let mut ddst = stream.alloc_zeros::<u8>(n).unwrap();
                    let gpack = time(budget, || {
                        let mut pos = 0;
                        c.pack_gpu(gpu, &stream, &dsrc, origin as u64, 1, &mut ddst, &mut pos).unwrap();
                        stream.synchronize().unwrap();
                    });
                    let gcopy = time(budget, || {
                        stream.memcpy_dtod(&dsrc.slice(origin..origin + n), &mut ddst).unwrap();
                        stream.synchronize().unwrap();
                    });
                    gpu_cols = format!("{:>9.1} {:>9.1} {:>6.2}", gb(gpack), gb(gcopy), gcopy / gpack);
                }
                println!(
                    "{dims:>3} {block:>6} {n:>9} | {:>9.2} {:>9.2} {:>6.2} | {gpu_cols}",
                    gb(pack),
                    gb(copy),
                    copy / pack
                );
            }
        }
    }
}
