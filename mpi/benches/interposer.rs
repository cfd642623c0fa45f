//! MPI_Pack and a 3-D halo exchange with and without the interposer, over
//! block sizes, as a table of speedups (host buffers).
//!
//! ```sh
//! cargo bench -p memwall-mpi --bench interposer     # or mpi/scripts/bench.sh
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it only runs a tiny smoke
//! pass of both programs. Without MPI it prints `MEMWALL-SKIP` and exits 0.

#[path = "../tests/support/mod.rs"]
mod support;

use support::{Mpi, Opts, Run};

/// `(key, seconds)` from the program's timing lines, e.g. key `8` for
/// `pack block_bytes=8 ... seconds=...`.
fn timings(r: &Run, prefix: &str, key: &str) -> Vec<(u64, f64)> {
    let field = |l: &str, k: &str| -> Option<String> {
        l.split_whitespace().find_map(|f| f.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
    };
    r.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| Some((field(l, key)?.parse().ok()?, field(l, "seconds")?.parse().ok()?)))
        .collect()
}

fn pair(mpi: &Mpi, np: usize, prog: &str, args: &[&str], prefix: &str, key: &str) -> Vec<(u64, f64, f64)> {
    let opts = |preload| Opts { preload, fast_shm: true, ..Opts::default() };
    let plain = mpi.run(np, prog, args, &opts(false));
    let ours = mpi.run(np, prog, args, &opts(true));
    for (what, r) in [("library", &plain), ("memwall", &ours)] {
        assert!(r.ok, "{prog} ({what}) failed:\n{}\n{}", r.stdout, r.stderr);
    }
    let (a, b) = (timings(&plain, prefix, key), timings(&ours, prefix, key));
    assert_eq!(a.len(), b.len(), "{prog}: timing lines differ");
    a.iter().zip(&b).map(|(&(k, t0), &(_, t1))| (k, t0, t1)).collect()
}

fn table(title: &str, unit: &str, rows: &[(u64, f64, f64)]) {
    println!("\n{title}");
    println!("| {unit:>12} | library us | memwall us | speedup |");
    println!("| {:->12} | ---------: | ---------: | ------: |", "");
    for &(k, lib, ours) in rows {
        println!("| {k:>12} | {:>10.2} | {:>10.2} | {:>6.2}x |", lib * 1e6, ours * 1e6, lib / ours);
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let Some(mpi) = support::mpi_or_skip("bench interposer") else { return };
    if !full {
        // Smoke: tiny sizes, checks both programs run both ways.
        let p = pair(mpi, 1, "bench_pack", &["4096", "0.001"], "pack ", "block_bytes");
        assert_eq!(p.len(), 5);
        let h = pair(mpi, 2, "halo3d", &["bench", "8", "2"], "halo ", "N");
        assert_eq!(h.len(), 1);
        println!("interposer bench smoke: ok");
        return;
    }
    println!("memwall-mpi interposer benchmark ({}), host buffers", memwall_mpi::built_with().unwrap_or("MPI"));
    let pack = pair(mpi, 1, "bench_pack", &["1048576", "0.3"], "pack ", "block_bytes");
    table("MPI_Pack, vector of doubles, 1 MiB packed per call (block = contiguous bytes)", "block bytes", &pack);
    let mut halo = Vec::new();
    for n in [8u64, 16, 32, 64, 128] {
        let iters = (4_000_000 / (n * n * n)).clamp(20, 2000).to_string();
        halo.extend(pair(mpi, 2, "halo3d", &["bench", &n.to_string(), &iters], "halo ", "N"));
    }
    table("3-D halo exchange, 2 ranks, N^3 doubles per rank, 6 subarray faces (Isend/Irecv/Waitall)", "N", &halo);
}
